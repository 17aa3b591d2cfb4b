"""e2e: a training run that runs out of memory ends with a `failed` event that says so and what to do, and
`tuitune runs`, `runs --json`, the TUI's /runs and its training card all show that advice.

Running out of memory cannot be had on demand on a 24 GiB machine without risking the OS killer, so the fault
is injected: a `sitecustomize` module on the worker's PYTHONPATH makes the first training step ask torch's real
allocator for 4 EiB, which fails with the allocator's own error (on CPU: "DefaultCPUAllocator: can't allocate
memory"). Everything else is the real worker on the embedded model."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tuitune.core.data.formats import read_file
from tuitune.core.data.store import Store
from tuitune.core.training import jobs
from tuitune.core.training.config import TrainConfig
from tuitune.settings import load_settings

pytestmark = pytest.mark.e2e

INJECT = '''
import os
if os.environ.get("TUITUNE_TEST_INJECT_OOM") == "1":
    import torch
    import transformers

    def training_step(self, *args, **kwargs):
        device = "cuda" if torch.cuda.is_available() else "cpu"
        torch.empty(1 << 62, dtype=torch.uint8, device=device)  # the real allocator refuses this

    transformers.Trainer.training_step = training_step
'''


@pytest.fixture(scope="module")
def oom_run(tmp_path_factory, real_fixtures, embedded_model):
    project = tmp_path_factory.mktemp("oom")
    inject = tmp_path_factory.mktemp("inject")
    (inject / "sitecustomize.py").write_text(INJECT, encoding="utf-8")
    with Store.open(project) as store:
        samples = read_file(real_fixtures / "llamafactory_alpaca_en_demo.json").samples[:6]
        store.add_samples([s.with_(status="accepted") for s in samples])
    mp = pytest.MonkeyPatch()
    try:  # only the worker launched here inherits the injection
        mp.setenv("PYTHONPATH", str(inject))
        mp.setenv("TUITUNE_TEST_INJECT_OOM", "1")
        run_id = jobs.launch(load_settings(project=project), TrainConfig(max_steps=2, lora_r=4, merge=False))
    finally:
        mp.undo()
    d = project / "runs" / run_id
    info = jobs.wait(d, timeout=600, poll=1)
    return {"project": project, "id": run_id, "dir": d, "info": info}


def test_failed_event_says_out_of_memory_and_what_to_do(oom_run):
    info, d = oom_run["info"], oom_run["dir"]
    assert info.status == "failed", (d / "worker.log").read_text()[-3000:]
    failed = [e for e in jobs.read_events(d)[0] if e["event"] == "failed"]
    assert len(failed) == 1 and failed[0]["kind"] == "oom"
    assert "allocate" in failed[0]["error"]
    for advice in ("micro_batch_size", "max_length", "qlora"):
        assert advice in failed[0]["hint"]
    assert info.hint == failed[0]["hint"] and "allocate" in info.error
    assert not (d / "adapter").exists()  # no half-written result


def test_runs_cli_shows_the_advice(oom_run):
    base = [sys.executable, "-m", "tuitune.cli", "--project", str(oom_run["project"]), "runs"]
    text = subprocess.run(base, capture_output=True, text=True, timeout=120, check=True).stdout
    line = next(x for x in text.splitlines() if x.startswith(oom_run["id"]))
    assert "failed" in line
    assert "can't allocate memory" in text or "out of memory" in text.lower()
    assert "micro_batch_size" in text and "qlora" in text
    rows = json.loads(subprocess.run([*base, "--json"], capture_output=True, text=True, timeout=120,
                                     check=True).stdout)
    row = next(r for r in rows if r["id"] == oom_run["id"])
    assert row["status"] == "failed" and "qlora" in row["hint"]
    watch = subprocess.run([*base, "watch", oom_run["id"]], capture_output=True, text=True, timeout=120, check=False)
    assert watch.returncode == 1 and "step 0/?" in watch.stderr and "qlora" in watch.stderr


async def test_tui_shows_the_advice(oom_run, home):
    from tuitune.settings import load_settings
    from tuitune.tui.app import make_app

    app = make_app(load_settings(project=oom_run["project"], home=home))
    async with app.run_test(size=(120, 40)) as pilot:
        app.screen.query_one("#prompt").value = "/runs"
        await pilot.press("enter")
        app.screen.follow_run(oom_run["id"])
        deadline = time.monotonic() + 30
        card_text = ""
        while time.monotonic() < deadline:
            await pilot.pause(0.2)
            cards = app.screen.query(f"#run-{oom_run['id']} #train-status")
            card_text = str(cards.first().render()) if cards else ""
            if "failed" in card_text:
                break
        assert "failed" in card_text and "micro_batch_size" in card_text, card_text
        transcript = "\n".join(m.source for m in app.screen.query("Markdown"))
        assert f"**{oom_run['id']}** failed" in transcript and "qlora" in transcript
