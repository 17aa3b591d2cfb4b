"""e2e: `tuitune train` (LoRA SFT) launched from a CLI process that exits at once; the detached worker trains
the real embedded model on CPU, writes events, TensorBoard logs, the adapter, the merged model and the
post-train checks. One run, shared by every test in this module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tuitune.core.data.formats import read_file
from tuitune.core.data.store import Store
from tuitune.core.training import jobs

pytestmark = pytest.mark.e2e


def short_samples(real_fixtures, n):
    samples = read_file(real_fixtures / "llamafactory_alpaca_en_demo.json").samples
    return sorted(samples, key=lambda s: len(s.instruction) + len(s.input) + len(s.output))[:n]


def tuitune(project: Path, *args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuitune.cli", "--project", str(project), *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, real_fixtures, embedded_model):
    project = tmp_path_factory.mktemp("train_lora")
    with Store.open(project) as store:
        store.set_task(system_prompt="Answer briefly.")
        store.add_samples([s.with_(status="accepted", system="Answer briefly.")
                           for s in short_samples(real_fixtures, 8)])
    t0 = time.monotonic()
    cli = tuitune(project, "train", "--method", "lora", "--max-steps", "2", "--set", "lora_r=4",
                  "--set", "batch_size=4", "--set", "check_max_new_tokens=48")
    cli_seconds = time.monotonic() - t0
    assert cli.returncode == 0, cli.stderr
    run_id = cli.stdout.strip().splitlines()[-1]
    d = project / "runs" / run_id
    pid = int((d / "worker.pid").read_text())
    parent_gone_while_running = jobs.run_info(d).status == "running"
    info = jobs.wait(d, timeout=900, poll=2)
    assert info.status == "done", (d / "worker.log").read_text()[-3000:]
    return {"project": project, "id": run_id, "dir": d, "pid": pid, "cli_seconds": cli_seconds,
            "parent_gone_while_running": parent_gone_while_running, "events": jobs.read_events(d)[0]}


def test_detached_launch_survives_its_parent(finished):
    # The CLI process exited (with the id) while the worker was still running; the worker finished alone.
    assert finished["parent_gone_while_running"]
    assert jobs.run_info(finished["dir"]).status == "done"
    started = next(e for e in finished["events"] if e["event"] == "started")
    assert started["pid"] == finished["pid"] != os.getpid()


def test_events_tell_the_whole_story(finished):
    from tuitune.core.training.config import TrainConfig

    ev = finished["events"]
    kinds = [e["event"] for e in ev]
    assert kinds[0] == "started" and kinds[-1] == "done"
    for k in ("model", "step", "checkpoint", "merged", "check"):
        assert k in kinds
    steps = [e for e in ev if e["event"] == "step"]
    assert [s["step"] for s in steps] == [1, 2]
    for s in steps:
        assert s["loss"] > 0 and s["grad_norm"] is not None and s["lr"] is not None
        assert s["tokens_per_second"] > 0 and s["eta_seconds"] >= 0 and s["max_steps"] == 2
    model = next(e for e in ev if e["event"] == "model")
    assert 0 < model["trainable_params"] < model["total_params"] / 20  # LoRA r=4 trains a small fraction
    assert model["dtype"] == "float32"  # fp32 weights on CPU (bf16 only as autocast, where measured faster)
    # the batch of 4 in passes of the preset's size (short records here: they share a pass)
    cfg = TrainConfig.load(finished["dir"] / "config.yaml")
    assert model["records_per_pass"] == cfg.micro_batch_size and cfg.micro_batch_size > 1
    assert model["records_per_pass"] * model["passes_per_step"] == 4
    assert model["precision"] in ("fp32", "bf16 autocast, fp32 weights")
    checks = {e["check"]: e for e in ev if e["event"] == "check"}
    assert checks["chat_template"]["passed"]
    stops = checks["stops"]
    assert len(stops["results"]) == 3 and stops["max_new_tokens"] == 48
    assert stops["passed"] == all(r["stopped"] for r in stops["results"])
    assert all(r["tokens"] <= 48 for r in stops["results"])


def test_run_folder_contents(finished):
    from tuitune.core.training.config import TrainConfig

    d = finished["dir"]
    cfg = TrainConfig.load(d / "config.yaml")
    assert cfg.method == "lora" and cfg.lora_r == 4 and cfg.max_steps == 2 and cfg.max_length >= 64
    assert Path(cfg.data) == d / "data.jsonl"
    rows = [json.loads(x) for x in (d / "data.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and rows[0]["messages"][0] == {"role": "system", "content": "Answer briefly."}
    assert list((d / "tensorboard").rglob("events.out.tfevents*"))
    assert (d / "adapter" / "adapter_config.json").exists()
    assert list((d / "merged").glob("*.safetensors")) and (d / "merged" / "tokenizer_config.json").exists()


def test_adapter_learned_and_merged_model_generates(finished, embedded_model):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = finished["dir"]
    base = AutoModelForCausalLM.from_pretrained(embedded_model, dtype=torch.float32)
    base_w = base.model.layers[0].self_attn.q_proj.weight.detach().clone()
    peft = PeftModel.from_pretrained(base, d / "adapter")
    lora_b = [p for n, p in peft.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # B starts at zero: non-zero means it trained

    merged = AutoModelForCausalLM.from_pretrained(d / "merged")
    assert not torch.equal(merged.model.layers[0].self_attn.q_proj.weight.float(), base_w)
    tok = AutoTokenizer.from_pretrained(d / "merged")
    assert tok.chat_template == (d / "chat_template.jinja").read_text()
    enc = tok.apply_chat_template([{"role": "user", "content": "Name a colour."}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = merged.generate(**enc, max_new_tokens=12, do_sample=False)
    text = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert text.strip()


def test_runs_cli_watch_and_merge(finished):
    project, run_id = finished["project"], finished["id"]
    res = tuitune(project, "runs", "--json")
    rows = json.loads(res.stdout)
    assert [(r["id"], r["status"], r["step"], r["max_steps"]) for r in rows] == [(run_id, "done", 2, 2)]
    res = tuitune(project, "runs")
    assert run_id in res.stdout and "done" in res.stdout
    res = tuitune(project, "runs", "watch", run_id)
    assert res.returncode == 0 and "done" in res.stderr and "training loss" in res.stdout
    assert "step 2/2" in res.stderr  # the progress bar's last state
    merged = finished["dir"] / "merged"
    before = merged.stat().st_mtime_ns
    res = tuitune(project, "merge", run_id, timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == str(merged)
    assert merged.stat().st_mtime_ns != before and list(merged.glob("*.safetensors"))
