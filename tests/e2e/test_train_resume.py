"""e2e: one run is stopped cleanly (`runs stop`: checkpoint, then `stopped`), resumed, killed with SIGKILL
mid-run (`runs` shows it interrupted), resumed again from the last checkpoint, and finishes; the final adapter
loads."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from training_runs import cli, wait_for

from tuitune.core.data.formats import read_file
from tuitune.core.data.store import Store
from tuitune.core.training import jobs

pytestmark = pytest.mark.e2e


def test_stop_resume_kill_resume(tmp_path, real_fixtures, embedded_model):
    samples = sorted(read_file(real_fixtures / "llamafactory_alpaca_en_demo.json").samples,
                     key=lambda s: len(s.instruction) + len(s.input) + len(s.output))[:8]
    with Store.open(tmp_path) as store:
        store.add_samples([s.with_(status="accepted") for s in samples])
    res = cli(tmp_path, "train", "--max-steps", "4", "--set", "lora_r=4", "--set", "batch_size=2",
              "--set", "save_steps=1", "--set", "merge=false")
    assert res.returncode == 0, res.stderr
    run_id = res.stdout.strip()
    d = tmp_path / "runs" / run_id

    # 1. clean stop: checkpoint at the end of the current step, then a `stopped` event
    wait_for(d, lambda e: e["event"] == "step")
    res = cli(tmp_path, "runs", "stop", run_id)
    assert res.returncode == 0 and "stopped" in res.stdout, res.stderr
    stopped = [e for e in jobs.read_events(d)[0] if e["event"] == "stopped"][-1]
    assert stopped["checkpoint"] and stopped["checkpoint"].endswith(f"checkpoint-{stopped['step']}")
    assert stopped["step"] < 4
    assert [r.status for r in jobs.list_runs(tmp_path)] == ["stopped"]

    # 2. resume, then SIGKILL after the next checkpoint
    res = cli(tmp_path, "train", "--resume", run_id)
    assert res.returncode == 0 and res.stdout.strip() == run_id
    resumed = wait_for(d, lambda e: e["event"] == "resumed")
    assert resumed["checkpoint"].endswith(f"checkpoint-{stopped['step']}")
    ck = wait_for(d, lambda e: e["event"] == "checkpoint" and e["time"] > resumed["time"])
    os.kill(int((d / "worker.pid").read_text()), signal.SIGKILL)
    time.sleep(1)
    rows = json.loads(cli(tmp_path, "runs", "--json").stdout)
    assert rows[0]["status"] == "interrupted" and f"tuitune train --resume {run_id}" in rows[0]["hint"]

    # 3. resume from the last checkpoint and finish
    assert cli(tmp_path, "train", "--resume", run_id).returncode == 0
    info = jobs.wait(d, timeout=600, poll=1)
    assert info.status == "done", (d / "worker.log").read_text()[-3000:]
    events = jobs.read_events(d)[0]
    last_resume = [e for e in events if e["event"] == "resumed"][-1]
    last_ck_step = max(e["step"] for e in events if e["event"] == "checkpoint" and e["time"] < last_resume["time"])
    assert last_ck_step >= ck["step"]
    assert last_resume["checkpoint"].endswith(f"checkpoint-{last_ck_step}")
    after = [e["step"] for e in events if e["event"] == "step" and e["time"] > last_resume["time"]]
    assert after and after[0] == last_ck_step + 1 and after[-1] == 4  # continued, not restarted
    assert events[-1]["event"] == "done" and events[-1]["step"] == 4

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(embedded_model), d / "adapter")
    assert any(p.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)
    assert not (d / "merged").exists()  # merge: false was honoured
    res = cli(tmp_path, "train", "--resume", run_id)
    assert res.returncode == 2 and "already finished" in res.stderr
