"""Pilot: while a run trains, its card says what follows the steps' ETA (merging, the stop check, the held-out
verdict, the parity check), so a "48s" ETA is not read as the whole run (issue 21 #14)."""

from __future__ import annotations

import pytest

from tuitune.core.training.config import TrainConfig
from tuitune.core.training.events import EventWriter
from tuitune.settings import load_settings
from tuitune.tui.app import make_app

RUN = "20260101-000000-lora-eeee"


@pytest.mark.parametrize(("cfg", "after"), [
    (TrainConfig(eval=True, parity=True), "then merging, the stop check, the held-out verdict and the parity check"),
    (TrainConfig(method="full", check_prompts=0), None),
])
async def test_the_running_card_names_what_comes_after_the_steps(tmp_path, home, monkeypatch, cfg, after):
    from tuitune.core.training import jobs

    d = tmp_path / "proj" / "runs" / RUN
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
    w = EventWriter(d)
    w.emit("started", pid=1, method=cfg.method, base="smollm2", device="cpu", gpus=0, checkpoint=None)
    w.emit("step", step=3, max_steps=6, loss=1.5, tokens_per_second=140.0, eta_seconds=48)
    monkeypatch.setattr(jobs, "worker_alive", lambda path: True)  # a live worker, without training one
    app = make_app(load_settings(project=tmp_path / "proj", home=home))
    async with app.run_test(size=(100, 32)) as pilot:
        app.screen.follow_run(RUN)
        await pilot.pause(0.5)
        status = str(app.screen.query_one("#train-status").render())
    assert "step 3/6" in status and "ETA 48s" in status, status
    if after:
        assert after in status.replace("\n", " "), status
    else:
        assert "then" not in status, status
