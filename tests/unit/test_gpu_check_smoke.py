"""bench/gpu_check.py builds its own model and tokenizer (no download on the device): they must be something the
real training path accepts, so a lent GPU's few minutes are not spent on a broken check. The full script runs
the worker (`bench/gpu_check.py --cpu-smoke`, about a minute here); this checks its parts in seconds."""

from __future__ import annotations

import bench_scripts
import pytest


@pytest.fixture(scope="module")
def gpu_check():
    return bench_scripts.load("gpu_check")


@pytest.fixture(scope="module")
def tiny(gpu_check, tmp_path_factory):
    return gpu_check.build_model(tmp_path_factory.mktemp("tiny") / "model", cpu=True)


def test_tokenizer_knows_every_word_and_loss_is_on_answers_only(gpu_check, tiny):
    from transformers import AutoTokenizer

    from tuitune.core.training.data import tokenize_sft

    tok = AutoTokenizer.from_pretrained(tiny)
    assert tok.chat_template and tok.eos_token == "<|im_end|>"
    records = gpu_check.sft_records()
    enc = tokenize_sft(tok, records)
    for rec, ids, labels in zip(records, enc.input_ids, enc.labels):
        assert tok.unk_token_id not in ids
        trained = [t for t in labels if t != -100]
        assert trained[-1] == tok.eos_token_id  # the model learns to stop
        answer = rec["messages"][-1]["content"]
        assert tok.decode(trained[:-1]).split() == answer.split()  # exactly the assistant turn, nothing else
    pairs = gpu_check.dpo_records()
    words = {w for p in pairs for side in ("prompt", "chosen", "rejected") for m in p[side] for w in m["content"].split()}
    assert tok.unk_token_id not in tok(" ".join(sorted(words)))["input_ids"]


@pytest.mark.parametrize("method", ["lora", "full", "dpo"])
def test_the_real_launch_validation_accepts_the_check_runs(gpu_check, tiny, tmp_path, method):
    import json

    from tuitune.core.training import jobs
    from tuitune.core.training.config import TrainConfig
    from tuitune.settings import load_settings

    data = tmp_path / "data.jsonl"
    rows = gpu_check.dpo_records() if method == "dpo" else gpu_check.sft_records()
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "project").mkdir()
    settings = load_settings(project=tmp_path / "project", home=tmp_path / "home")
    cfg = TrainConfig(method=method, base=str(tiny), data=str(data), max_steps=2, epochs=100, batch_size=len(rows),
                      holdout=0, device="cpu", bf16=False)
    resolved, records = jobs.prepare(settings, cfg)
    assert len(records) == len(rows) and resolved.base_path == str(tiny.resolve())
    assert resolved.max_length <= 256  # within the tiny model's max_position_embeddings
    assert not (tmp_path / "project" / "runs").exists()  # validation creates nothing
