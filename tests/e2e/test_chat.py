"""Chat sessions against the shared real vLLM server, the transformers fallback engine, closing the loop
(save as seed with a correction), `tuitune chat --url --prompt`, and `tuitune eval` end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tuitune.core.serving.chat import (
    ChatSession,
    GenParams,
    OpenAIBackend,
    TransformersBackend,
    save_exchange,
)

pytestmark = pytest.mark.e2e
MODEL = "smollm2-135m-instruct"


async def test_session_uses_task_system_prompt_history_stop_and_regenerate(vllm_embedded, store):
    store.set_task(system_prompt="You are a terse assistant. Answer in one sentence.")
    chat = ChatSession.for_store(store, OpenAIBackend.from_server(vllm_embedded, MODEL),
                                 params=GenParams(temperature=0, max_tokens=40))
    assert chat.backend.engine == "vllm"
    first = "".join([d async for d in chat.send("What is the capital of France?")])
    assert first.strip() and chat.history == [("What is the capital of France?", first)]
    msgs = chat.messages("And of Italy?")
    assert msgs[0] == {"role": "system", "content": "You are a terse assistant. Answer in one sentence."}
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"] and msgs[2]["content"] == first
    second = "".join([d async for d in chat.send("And of Italy?")])
    assert second.strip() and len(chat.history) == 2

    # stop(): the answer ends early and what was streamed is kept
    long = ChatSession(chat.backend, params=GenParams(temperature=0, max_tokens=300))
    got = []
    async for d in long.send("Write a long essay about the history of Rome."):
        got.append(d)
        if len(got) == 5:
            long.stop()
    assert len(got) == 5 and long.history[-1][1] == "".join(got)

    # regenerate(): the last answer is replaced, history length unchanged
    sampled = ChatSession(chat.backend, params=GenParams(temperature=1.0, max_tokens=30, seed=1))
    a1 = "".join([d async for d in sampled.send("Name a colour.")])
    sampled.params = GenParams(temperature=1.0, max_tokens=30, seed=2)
    a2 = "".join([d async for d in sampled.regenerate()])
    assert len(sampled.history) == 1 and sampled.history[0] == ("Name a colour.", a2)
    assert a1.strip() and a2.strip()


def test_saving_an_exchange_closes_the_loop(store):
    from tuitune.core.data.preferences import preference_pairs

    seed = save_exchange(store, "Translate 'pod' to Chinese.", "pod", "容器组", as_seed=True, system="Translate.")
    assert seed.origin == "seed" and seed.output == "容器组" and seed.original == {"output": "pod"}
    kept = save_exchange(store, "Say hi.", "Hello!")
    assert kept.origin == "chat" and kept.status == "accepted" and kept.original is None
    assert {s.id for s in store.training_samples()} >= {seed.id, kept.id}
    pairs = preference_pairs(store)
    assert [(p.chosen, p.rejected) for p in pairs] == [("容器组", "pod")]


async def test_transformers_fallback_engine_streams(embedded_model):
    backend = TransformersBackend(embedded_model, MODEL)
    assert backend.engine == "transformers"
    chat = ChatSession(backend, params=GenParams(temperature=0, max_tokens=16))
    deltas = [d async for d in chat.send("What is the capital of France?")]
    assert len(deltas) > 1 and "Paris" in "".join(deltas)


async def test_models_loaded_at_once_in_threads_all_get_their_weights(embedded_model):
    """Side-by-side chat loads every model in its own thread; transformers' loading is not thread-safe (in CI one
    of two concurrent loads came back with meta tensors). Every backend must end up with the checkpoint's weights."""
    import asyncio

    from safetensors import safe_open

    backends = [TransformersBackend(embedded_model, f"m{i}") for i in range(4)]
    await asyncio.gather(*(asyncio.to_thread(b.load) for b in backends))
    with safe_open(str(embedded_model / "model.safetensors"), "pt") as f:
        name = next(k for k in f.keys() if k.endswith("layers.0.self_attn.q_proj.weight"))  # noqa: SIM118 (safe_open is not iterable)
        expected = f.get_tensor(name).float()
    for b in backends:
        got = dict(b._model.named_parameters())[name]
        assert got.device.type == "cpu" and bool((got.detach() == expected).all()), b.name


def _chat_url(vllm_embedded, tmp_path, *key_args, env=None):
    import os

    return subprocess.run([sys.executable, "-m", "tuitune.cli", "--project", str(tmp_path), "chat", "--url",
                           vllm_embedded.base_url, *key_args, MODEL, "--temperature", "0", "--max-tokens", "16",
                           "--prompt", "What is the capital of France?"],
                          check=False, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("way", ["env", "file", "argv"])
def test_cli_chat_against_a_running_server_takes_the_key_from_env_file_or_argv(vllm_embedded, tmp_path, way):
    """`--api-key-env VAR` and `--api-key-file PATH` keep the key out of `ps`; `--api-key` still works, with a
    warning that says so."""
    key_file = tmp_path / "key"
    key_file.write_text(vllm_embedded.api_key + "\n", encoding="utf-8")
    args = {"env": ["--api-key-env", "MY_SERVER_KEY"], "file": ["--api-key-file", str(key_file)],
            "argv": ["--api-key", vllm_embedded.api_key]}[way]
    out = _chat_url(vllm_embedded, tmp_path, *args, env={"MY_SERVER_KEY": vllm_embedded.api_key})
    assert out.returncode == 0, out.stderr
    assert "engine: remote" in out.stderr
    # the server's own greedy answer to the same question (what it says depends on the CPU: bf16 kernels with AMX)
    from openai import OpenAI

    direct = OpenAI(base_url=vllm_embedded.base_url, api_key=vllm_embedded.api_key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "What is the capital of France?"}], temperature=0,
        max_tokens=16).choices[0].message.content
    assert direct.strip() and out.stdout.strip() == direct.strip(), (out.stdout, direct)
    assert ("visible" in out.stderr or "can read it" in out.stderr) == (way == "argv"), out.stderr
    assert vllm_embedded.api_key not in out.stderr + out.stdout


def test_cli_chat_with_a_wrong_key_is_refused_and_exits_nonzero(vllm_embedded, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("not-the-key\n", encoding="utf-8")
    out = _chat_url(vllm_embedded, tmp_path, "--api-key-file", str(key_file))
    assert out.returncode == 1, (out.returncode, out.stderr)
    assert "401" in out.stderr and "Paris" not in out.stdout


def test_cli_eval_on_a_tiny_chinese_held_out_split(tiny_tuned, embedded_model, real_fixtures, tmp_path):
    """`tuitune eval` with the transformers engine (no extra vLLM start): base vs tuned, zh tokenizer, report saved."""
    from tuitune.core.training.config import TrainConfig

    rows = json.loads((real_fixtures / "llamafactory_alpaca_zh_demo.json").read_text(encoding="utf-8"))
    rows = [r for r in rows if len(r["output"]) < 60][:6]
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    records = [{"messages": [{"role": "user", "content": r["instruction"] + ("\n" + r["input"] if r["input"] else "")},
                             {"role": "assistant", "content": r["output"]}]} for r in rows]
    (run / "data.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    # a base known only by its folder (no model registered under that name): found as chat finds it
    cfg = TrainConfig(base="my-base", base_path=str(embedded_model), data=str(run / "data.jsonl"), holdout=2)
    (run / "config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
    (run / "merged").symlink_to(tiny_tuned["merged"], target_is_directory=True)
    out = subprocess.run([sys.executable, "-m", "tuitune.cli", "--project", str(tmp_path), "eval", "r1", "--engine",
                          "transformers", "--max-tokens", "12", "--merged", "--json"],
                         check=False, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    assert report["tokenizer"] == "zh" and report["n"] == 2
    assert set(report["models"]) == {"my-base", f"my-base + {report['few_shot']['k']}-shot", "r1"}  # base, few-shot, tuned
    for m in report["models"].values():
        assert m["engine"] == "transformers"
        assert set(m["metrics"]) >= {"bleu", "chrf", "rougeL"} and "tok:zh" in m["metrics"]["bleu_signature"]
    saved = json.loads((run / "eval" / "report.json").read_text(encoding="utf-8"))
    assert saved["models"] == report["models"]
    md = (run / "eval" / "report.md").read_text(encoding="utf-8")
    assert "| r1 (tuned) | transformers |" in md and "**Verdict:**" in md


async def test_llm_judge_grades_every_answer_on_the_served_model(vllm_embedded):
    """The judge path end to end with the served embedded model as the judge (the rubric prompt, a JSON-schema
    constrained verdict, parsing); a 135M judge's grades mean little, but each must be a parsed 1-5 score."""
    from tuitune.core.evaluation.evaluate import EvalItem, evaluate

    items = [EvalItem([{"role": "user", "content": "What is the capital of France?"}], "Paris."),
             EvalItem([{"role": "user", "content": "What is 2 + 2?"}], "4")]
    backend = OpenAIBackend.from_server(vllm_embedded, MODEL)
    report = await evaluate(items, [backend], run_id="judge-test", judge_backend=backend,
                            params=GenParams(temperature=0, max_tokens=16))
    verdict = report.results[0].judge
    assert verdict["judge"] == MODEL and verdict["scored"] == 2 and verdict["unparseable"] == 0
    assert all(s in (1, 2, 3, 4, 5) for s in verdict["scores"]) and 1 <= verdict["mean"] <= 5
    assert report.results[0].metrics["tokenizer"] == "13a"


def test_cli_chat_streams_several_models_side_by_side_in_a_terminal(tiny_tuned, embedded_model, tmp_path):
    """In a terminal (a pty here), `tuitune chat A B` draws one live column per model; piped, it prints lines."""
    import os
    import pty

    cmd = [sys.executable, "-m", "tuitune.cli", "--project", str(tmp_path), "chat", MODEL, str(tiny_tuned["merged"]),
           "--engine", "transformers", "--temperature", "0", "--max-tokens", "8", "--prompt", "Who are you?"]
    main_fd, child_fd = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "LINES": "30", "TERM": "xterm-256color"}
    proc = subprocess.Popen(cmd, stdin=child_fd, stdout=child_fd, stderr=subprocess.PIPE, env=env)
    os.close(child_fd)
    screen = b""
    while True:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    rc = proc.wait(timeout=300)
    os.close(main_fd)
    text = screen.decode("utf-8", "replace")
    assert rc == 0, proc.stderr.read().decode()[-3000:]
    assert MODEL in text and "merged" in text  # both column headers
    assert "\u2503" in text or "\u2502" in text or "|" in text  # drawn as a table, not as [name] lines
    assert f"[{MODEL}]" not in text
