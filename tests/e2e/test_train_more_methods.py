"""e2e: the methods beyond LoRA/QLoRA/DPO, each a couple of real steps on the embedded model: DoRA, full
fine-tuning, continued pre-training on raw text, KTO and ORPO from preference pairs."""

from __future__ import annotations

import json

import pytest

from tuitune.core.data.formats import read_file
from tuitune.core.data.store import Store
from tuitune.core.training import jobs
from tuitune.core.training.config import TrainConfig
from tuitune.settings import load_settings

pytestmark = pytest.mark.e2e


def _short_samples(real_fixtures, n=6):
    samples = read_file(real_fixtures / "llamafactory_alpaca_en_demo.json").samples
    return sorted(samples, key=lambda s: len(s.instruction) + len(s.input) + len(s.output))[:n]


def _train(project, cfg: TrainConfig) -> tuple:
    run_id = jobs.launch(load_settings(project=project), cfg)
    d = project / "runs" / run_id
    info = jobs.wait(d, timeout=900, poll=2)
    assert info.status == "done", (d / "worker.log").read_text()[-3000:]
    return d, jobs.read_events(d)[0]


def _pairs_file(tmp_path, real_fixtures, n=6):
    pairs = json.loads((real_fixtures / "llamafactory_dpo_en_demo.json").read_text(encoding="utf-8"))
    data = tmp_path / "pairs.json"
    data.write_text(json.dumps(sorted(pairs, key=lambda r: len(json.dumps(r)))[:n]), encoding="utf-8")
    return data


def test_dora_adapter(tmp_path, real_fixtures, embedded_model):
    with Store.open(tmp_path) as store:
        store.add_samples([s.with_(status="accepted") for s in _short_samples(real_fixtures)])
    d, events = _train(tmp_path, TrainConfig(method="dora", max_steps=2, lora_r=4, batch_size=2, check_prompts=0))
    assert json.loads((d / "adapter" / "adapter_config.json").read_text())["use_dora"] is True
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2]
    assert (d / "merged" / "config.json").exists()


def test_full_fine_tuning_changes_the_weights(tmp_path, real_fixtures, embedded_model):
    import torch
    from safetensors.torch import load_file

    with Store.open(tmp_path) as store:
        store.add_samples([s.with_(status="accepted") for s in _short_samples(real_fixtures, 4)])
    d, events = _train(tmp_path, TrainConfig(method="full", max_steps=1, batch_size=2, learning_rate=1e-4,
                                             check_prompts=0))
    model = next(e for e in events if e["event"] == "model")
    assert model["trainable_params"] == model["total_params"]  # every weight trains, no adapter
    assert not (d / "adapter").exists()
    tuned = load_file(d / "merged" / "model.safetensors")
    base = load_file(embedded_model / "model.safetensors")
    name = next(k for k in tuned if k.endswith("mlp.down_proj.weight"))
    assert not torch.equal(tuned[name].float(), base[name].float())


def test_pretrain_on_raw_text(tmp_path, real_fixtures, embedded_model):
    text = "\n\n".join(s.output for s in read_file(real_fixtures / "llamafactory_alpaca_en_demo.json").samples[:40])
    txt = tmp_path / "notes.txt"
    txt.write_text(text, encoding="utf-8")
    d, events = _train(tmp_path / "proj", TrainConfig(method="pretrain", text_files=[str(txt)], max_length=128,
                                                      max_steps=2, lora_r=4, batch_size=2))
    steps = [e for e in events if e["event"] == "step"]
    assert [s["step"] for s in steps] == [1, 2] and all(s["loss"] > 0 for s in steps)
    assert (d / "adapter" / "adapter_config.json").exists()


@pytest.mark.parametrize("method, metric", [("kto", "kl"), ("orpo", "log_odds_ratio")])
def test_preference_methods(tmp_path, real_fixtures, embedded_model, method, metric):
    d, events = _train(tmp_path / "proj", TrainConfig(method=method, data=str(_pairs_file(tmp_path, real_fixtures)),
                                                      max_steps=2, lora_r=4, batch_size=4, check_prompts=0))
    steps = [e for e in events if e["event"] == "step"]
    assert [s["step"] for s in steps] == [1, 2]
    assert any(metric in k for s in steps for k in s["metrics"]), steps[0]["metrics"]
    assert (d / "merged" / "config.json").exists() and events[-1]["event"] == "done"
