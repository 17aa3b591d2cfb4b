"""e2e fixtures: ONE vLLM server on the embedded model for the whole test run (other e2e tests share it)."""

from __future__ import annotations

import pytest

EMBEDDED_SERVED_NAME = "smollm2-135m-instruct"

# Shared servers still to stop early: fixture name -> (server, node ids of the tests left that use it).
_STOP_AFTER_LAST: dict[str, tuple[object, set[str]]] = {}


def _stop_after_last_user(request, server) -> None:
    """Stop `server` right after the last test of this process that uses it, instead of at the session's end:
    its memory (model + KV cache) and threads go back to the tests after it. Only where every such test runs in
    this process: one process, or xdist's loadgroup, which tests/conftest.py makes put them on one worker."""
    from xdist_support import every_group_runs_here

    if not every_group_runs_here(request.config):
        return
    name = request.fixturename
    users = {i.nodeid for i in request.session.items if name in getattr(i, "fixturenames", ())}
    _STOP_AFTER_LAST[name] = (server, users)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    for name, (server, users) in list(_STOP_AFTER_LAST.items()):
        users.discard(item.nodeid)
        if not users:
            del _STOP_AFTER_LAST[name]
            server.stop()  # idempotent: the fixture's own stop at the session's end finds it stopped


@pytest.fixture(scope="session")
def vllm_embedded(embedded_model, tmp_path_factory, request):
    """A started VLLMServer serving the embedded model as "smollm2-135m-instruct", shared by the session.

    Uses the run's settings (TUITUNE_VLLM_KV_CACHE_GIB, TUITUNE_VLLM_ENFORCE_EAGER). Do not stop it in a test;
    if a test must break it, use its own server. The log is in the session's temp folder (path: server.log_path).
    """
    from tuitune.core.serving.vllm import VLLMServer
    from tuitune.settings import Settings

    log = tmp_path_factory.mktemp("vllm") / "vllm-embedded.log"
    server = VLLMServer(embedded_model, name=EMBEDDED_SERVED_NAME, log_path=log, settings=Settings())
    server.start()
    _stop_after_last_user(request, server)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tiny_tuned(embedded_model, real_fixtures, tmp_path_factory):
    """A really (if briefly) tuned model: 2 LoRA steps on LLaMA-Factory's identity demo, saved as a PEFT
    adapter folder and as a merged full model folder (tokenizer + chat template included), like a run's
    adapter/ and merged/. Returns {"adapter": Path, "merged": Path}."""
    import json

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("tuned")
    tok = AutoTokenizer.from_pretrained(embedded_model)
    model = AutoModelForCausalLM.from_pretrained(embedded_model, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                             task_type="CAUSAL_LM"))
    records = json.loads((real_fixtures / "llamafactory_identity.json").read_text(encoding="utf-8"))[:4]
    texts = [tok.apply_chat_template([{"role": "user", "content": r["instruction"]},
                                      {"role": "assistant", "content": r["output"]}], tokenize=False)
             for r in records]
    batch = tok(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    for _ in range(2):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    adapter = out / "adapter"
    model.save_pretrained(adapter)
    tok.save_pretrained(adapter)
    merged = out / "merged"
    model.merge_and_unload().to(torch.bfloat16).save_pretrained(merged, safe_serialization=True)
    tok.save_pretrained(merged)
    return {"adapter": adapter, "merged": merged}


@pytest.fixture(scope="session")
def scrambled_adapter(embedded_model, tmp_path_factory):
    """A real PEFT LoRA adapter on the embedded model whose B matrices are random (PEFT's
    `init_lora_weights=False`, seeded) instead of trained: it changes every answer a lot, so a test can tell at
    once whether a request was answered with or without it (the 2-step `tiny_tuned` adapter often answers like
    the base). Made in a few seconds, no training."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(embedded_model, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                             init_lora_weights=False, task_type="CAUSAL_LM"))
    out = tmp_path_factory.mktemp("scrambled") / "adapter"
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def vllm_base_and_tuned(embedded_model, tiny_tuned, scrambled_adapter, tmp_path_factory, request):
    """One server with the embedded model as "base" and two adapters (--enable-lora): the tiny trained one as
    "tuned" and the random-B one as "scrambled" (answers unlike the base's: see tests/e2e/test_mixed_lora_batches.py).
    In float32: the CPU build's bf16 kernels give greedy answers that depend on the batch (two base requests at
    once can answer differently from one alone), fp32 ones did not in any batch tried, so tests can compare
    answers given at once with answers given alone exactly.

    Started on a port that is already taken (by a listening socket this fixture holds), so the server must
    move to another port; `server.taken_port` is that port."""
    import socket

    from tuitune.core.serving.vllm import VLLMServer
    from tuitune.settings import Settings

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    server = VLLMServer(embedded_model, name="base",
                        lora={"tuned": tiny_tuned["adapter"], "scrambled": scrambled_adapter}, port=taken,
                        log_path=tmp_path_factory.mktemp("vllm-lora") / "vllm-lora.log", settings=Settings(),
                        max_model_len=2048, extra_args=["--dtype", "float32"])
    server.taken_port = taken
    try:
        server.start()
        _stop_after_last_user(request, server)
        yield server
    finally:
        server.stop()
        blocker.close()
