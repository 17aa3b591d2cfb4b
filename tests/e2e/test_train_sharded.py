"""e2e: sharded training for real on 2 CPU ranks (torchrun, gloo) with the embedded model, through the CLI.

- distributed fsdp (FSDP2 `fully_shard` via sharding.enable_cpu_fsdp): the model event says fsdp ran on 2 ranks,
  loss falls, a checkpoint, `runs stop` stops both ranks at one step (`stopped`), resume continues to `done`,
  merged/ (gathered on rank 0) generates text.
- distributed zero3 (DeepSpeed ZeRO-3 on its CPU accelerator): a LoRA run to `done`, adapter saved and merged.
"""

from __future__ import annotations

import time

import psutil
import pytest
from training_runs import cli, wait_for

from tuitune.core.data.formats import read_file
from tuitune.core.data.store import Store
from tuitune.core.training import jobs

pytestmark = pytest.mark.e2e


@pytest.fixture
def project(tmp_path, real_fixtures):
    samples = sorted(read_file(real_fixtures / "llamafactory_alpaca_en_demo.json").samples,
                     key=lambda s: len(s.instruction) + len(s.input) + len(s.output))[:8]
    with Store.open(tmp_path) as store:
        store.add_samples([s.with_(status="accepted") for s in samples])
    return tmp_path


def start(project, *args):
    res = cli(project, "train", "--cpu-ranks", "2", "--set", "lora_r=4", "--set", "batch_size=2", *args)
    assert res.returncode == 0, res.stderr
    return project / "runs" / res.stdout.strip()


def model_event(d):
    return [e for e in jobs.read_events(d)[0] if e["event"] == "model"][-1]


def test_fsdp_two_cpu_ranks_stop_resume_merge(project, embedded_model):
    t0 = time.monotonic()
    d = start(project, "--distributed", "fsdp", "--max-steps", "6", "--set", "save_steps=2")
    wait_for(d, lambda e: e["event"] == "model")
    m = model_event(d)
    assert m["distributed"] == "fsdp" and m["world_size"] == 2 and m["backend"] == "gloo", m  # not a DDP fallback
    assert (d / "fsdp.json").is_file()

    wait_for(d, lambda e: e["event"] == "checkpoint")
    ranks = jobs._stop_targets(d)
    assert len(ranks) == 2, ranks  # the two rank processes under torchrun
    info = jobs.stop(project, d.name, timeout=300)
    assert info.status == "stopped", (d / "worker.log").read_text()[-3000:]
    stopped = [e for e in jobs.read_events(d)[0] if e["event"] == "stopped"][-1]
    assert stopped["step"] < 6 and stopped["checkpoint"].endswith(f"checkpoint-{stopped['step']}")
    _gone, alive = psutil.wait_procs([psutil.Process(p) for p in ranks if psutil.pid_exists(p)], timeout=120)
    assert not alive, alive  # both ranks ended after the `stopped` event
    log = (d / "worker.log").read_text()
    assert "Traceback" not in log and "failed" not in [e["event"] for e in jobs.read_events(d)[0]]

    assert cli(project, "train", "--resume", d.name).returncode == 0
    info = jobs.wait(d, timeout=900, poll=1)
    assert info.status == "done", (d / "worker.log").read_text()[-3000:]
    events = jobs.read_events(d)[0]
    resumed = [e for e in events if e["event"] == "resumed"][-1]
    after = [e["step"] for e in events if e["event"] == "step" and e["time"] > resumed["time"]]
    assert after[0] == stopped["step"] + 1 and after[-1] == 6  # continued, not restarted
    losses = [e["loss"] for e in events if e["event"] == "step"]
    assert sum(losses[-2:]) < sum(losses[:2]), losses  # the same 8 records over 3 epochs: loss falls
    assert (d / "adapter" / "adapter_model.safetensors").is_file()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(d / "merged")
    model = AutoModelForCausalLM.from_pretrained(d / "merged")
    ids = tok.apply_chat_template([{"role": "user", "content": "Say hello."}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    print(f"fsdp e2e: {time.monotonic() - t0:.0f} s")


def test_zero3_two_cpu_ranks_lora_done(project, embedded_model):
    t0 = time.monotonic()
    d = start(project, "--distributed", "zero3", "--max-steps", "2", "--set", "save_steps=2")
    info = jobs.wait(d, timeout=900, poll=1)
    assert info.status == "done", (d / "worker.log").read_text()[-3000:]
    m = model_event(d)
    assert m["distributed"] == "zero3" and m["world_size"] == 2, m
    assert (d / "deepspeed.json").is_file()
    assert list((d / "checkpoints").glob("checkpoint-2/global_step2"))  # DeepSpeed's own ZeRO checkpoint
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(embedded_model), d / "adapter")
    assert any(p.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)
    assert (d / "merged" / "config.json").is_file()
    print(f"zero3 e2e: {time.monotonic() - t0:.0f} s")
