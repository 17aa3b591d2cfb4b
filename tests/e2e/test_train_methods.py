"""e2e: QLoRA (4-bit nf4 base on CPU) SFT merged into a plain model, and DPO from real preference pairs run
with `--foreground` (streams progress, exit 0 on success)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tuitune.core.data.formats import read_file
from tuitune.core.data.store import Store
from tuitune.core.training import jobs
from tuitune.settings import load_settings

pytestmark = pytest.mark.e2e


def test_qlora_trains_on_a_4bit_base_and_merges(tmp_path, real_fixtures, embedded_model):
    import torch
    from transformers import AutoModelForCausalLM

    samples = sorted(read_file(real_fixtures / "llamafactory_alpaca_en_demo.json").samples,
                     key=lambda s: len(s.instruction) + len(s.input) + len(s.output))[:6]
    with Store.open(tmp_path) as store:
        store.add_samples([s.with_(status="accepted") for s in samples])
    from tuitune.core.training.config import TrainConfig

    run_id = jobs.launch(load_settings(project=tmp_path), TrainConfig(method="qlora", max_steps=2, lora_r=4, batch_size=3,
                                               check_prompts=1, check_max_new_tokens=16))
    d = tmp_path / "runs" / run_id
    info = jobs.wait(d, timeout=900, poll=2)
    assert info.status == "done", (d / "worker.log").read_text()[-3000:]
    events = jobs.read_events(d)[0]
    model = next(e for e in events if e["event"] == "model")
    assert model["quantization"] == "nf4" and model["total_params"] < 120_000_000  # 4-bit packed weights
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2]
    merged = AutoModelForCausalLM.from_pretrained(d / "merged")
    assert getattr(merged.config, "quantization_config", None) is None  # a plain model, loadable anywhere
    assert all(p.dtype in (torch.bfloat16, torch.float32) for p in merged.parameters())
    assert json.loads((d / "adapter" / "adapter_config.json").read_text())["r"] == 4


def test_dpo_from_preference_pairs_foreground(tmp_path, real_fixtures, embedded_model):
    pairs = json.loads((real_fixtures / "llamafactory_dpo_en_demo.json").read_text(encoding="utf-8"))
    pairs = sorted(pairs, key=lambda r: len(json.dumps(r)))[:6]
    data = tmp_path / "pairs.json"
    data.write_text(json.dumps(pairs), encoding="utf-8")
    project = tmp_path / "proj"
    res = subprocess.run([sys.executable, "-m", "tuitune.cli", "--project", str(project), "train", "--method", "dpo",
                          "--data", str(data), "--max-steps", "2", "--set", "lora_r=4", "--set", "batch_size=2",
                          "--set", "check_prompts=0", "--foreground"],
                         capture_output=True, text=True, timeout=900, check=False)
    run_id = res.stdout.strip().splitlines()[0]
    d = project / "runs" / run_id
    assert res.returncode == 0, res.stderr[-3000:] + (d / "worker.log").read_text()[-3000:]
    assert "done" in res.stderr and "training loss" in res.stdout  # streamed, then the loss curve
    events = jobs.read_events(d)[0]
    steps = [e for e in events if e["event"] == "step"]
    assert [s["step"] for s in steps] == [1, 2]
    assert all("rewards/chosen" in s["metrics"] and "rewards/margins" in s["metrics"] for s in steps)
    rows = [json.loads(x) for x in (d / "data.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and set(rows[0]) == {"prompt", "chosen", "rejected"}
    assert (d / "merged" / "config.json").exists() and events[-1]["event"] == "done"
