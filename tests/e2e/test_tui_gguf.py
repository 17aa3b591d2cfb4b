"""The TUI's way out for a tuned model (issue 18 #3): `g` on a finished run's card (or /gguf) writes the GGUF and
the Ollama Modelfile with core's export, in a card that shows the files, the `ollama create` line and the check of
the GGUF's answers; an existing export is asked about before it is replaced. Real conversion, real GGUF reader."""

from __future__ import annotations

import asyncio
import time

import pytest

from tuitune.core.training.config import TrainConfig
from tuitune.core.training.events import EventWriter
from tuitune.settings import load_settings
from tuitune.tui.app import make_app

pytestmark = pytest.mark.e2e
RUN = "20260101-000000-lora-gguf"


async def _until(pilot, cond, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)
    await pilot.pause()


async def test_g_on_a_finished_run_card_exports_a_gguf_and_asks_before_replacing(tiny_tuned, embedded_model,
                                                                                 tmp_path, home):
    from tuitune.tui.widgets.export_card import ExportCard
    from tuitune.tui.widgets.train_card import TrainCard

    project = tmp_path / "proj"
    run = project / "runs" / RUN
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(TrainConfig(base="smollm2-135m-instruct", base_path=str(embedded_model),
                                                 max_steps=2).to_yaml(), encoding="utf-8")
    (run / "merged").symlink_to(tiny_tuned["merged"], target_is_directory=True)
    w = EventWriter(run)
    w.emit("started", pid=1, method="lora", base="smollm2-135m-instruct", device="cpu", gpus=0, checkpoint=None)
    w.emit("step", step=2, max_steps=2, loss=1.0, tokens_per_second=10.0, eta_seconds=0)
    w.emit("done", step=2, metrics={}, adapter=None, merged=str(run / "merged"))
    app = make_app(load_settings(project=project, home=home))
    async with app.run_test(size=(100, 32)) as pilot:
        app.screen.follow_run(RUN)
        await _until(pilot, lambda: app.screen.query(TrainCard) and app.screen.query_one(TrainCard).status == "done",
                     10, "the run card")
        card = app.screen.query_one(TrainCard)
        assert "/gguf" in str(card.query_one("#train-status").render())
        card.focus()
        await pilot.press("g")
        await _until(pilot, lambda: app.screen.query(ExportCard) and (app.screen.query_one(ExportCard).result or
                                                                      app.screen.query_one(ExportCard).error),
                     240, "the GGUF export")
        export = app.screen.query_one(ExportCard)
        assert export.error is None, export.error
        shown = str(export.query_one("#export-status").render())
        assert export.result.gguf in shown and "ollama create" in shown and "check on 3 prompts" in shown, shown
        gguf = project / "exports" / "models" / f"{RUN}-q8_0" / f"{RUN}-q8_0.gguf"
        assert gguf.is_file() and (gguf.parent / "Modelfile").is_file()
        first = gguf.stat().st_mtime_ns
        # again: the existing export is asked about, and "keep it" keeps it
        app.screen.run_command(f"/gguf {RUN}")
        await _until(pilot, lambda: type(app.screen).__name__ == "Confirm", 10, "the replace question")
        await pilot.press("n")
        await pilot.pause()
        assert len(app.screen.query(ExportCard)) == 1 and gguf.stat().st_mtime_ns == first
        # an unknown run is refused at once, with no card
        app.screen.run_command("/gguf no-such-run")
        await pilot.pause()
        assert len(app.screen.query(ExportCard)) == 1
