"""e2e: qlora on an 8-bit (LLM.int8(), `quant: int8`) base trains on CPU and merges into a plain model
(bitsandbytes 0.50 runs 8-bit on CPU: measured, see core/training/quant.py)."""

from __future__ import annotations

import json
import math

import pytest

from tuitune.core.data.formats import read_file
from tuitune.core.data.store import Store
from tuitune.core.training import jobs
from tuitune.core.training.config import TrainConfig
from tuitune.core.training.quant import CAST_NOTICE
from tuitune.settings import load_settings

pytestmark = pytest.mark.e2e


def test_qlora_trains_on_an_8bit_base_and_merges(tmp_path, real_fixtures, embedded_model):
    from transformers import AutoModelForCausalLM

    samples = sorted(read_file(real_fixtures / "llamafactory_alpaca_en_demo.json").samples,
                     key=lambda s: len(s.instruction) + len(s.input) + len(s.output))[:4]
    with Store.open(tmp_path) as store:
        store.add_samples([s.with_(status="accepted") for s in samples])
    cfg = TrainConfig(method="qlora", quant="int8", max_steps=2, lora_r=4, batch_size=2, holdout=0,
                      check_prompts=0)
    run_id = jobs.launch(load_settings(project=tmp_path), cfg)
    d = tmp_path / "runs" / run_id
    info = jobs.wait(d, timeout=600, poll=1)
    log = (d / "worker.log").read_text()
    assert info.status == "done", log[-3000:]
    events = jobs.read_events(d)[0]
    model = next(e for e in events if e["event"] == "model")
    assert model["quantization"] == "int8" and "8-bit int8 frozen base" in model["precision"]
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == [1, 2] and all(math.isfinite(e["loss"]) for e in steps)
    assert CAST_NOTICE not in log  # bitsandbytes' per-matmul notice is dropped from the worker's log
    assert "quant: int8" in (d / "config.yaml").read_text()
    merged = AutoModelForCausalLM.from_pretrained(d / "merged")
    assert getattr(merged.config, "quantization_config", None) is None  # a plain model, loadable anywhere
    assert json.loads((d / "adapter" / "adapter_config.json").read_text())["r"] == 4
