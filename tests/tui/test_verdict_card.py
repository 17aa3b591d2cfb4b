"""Pilot: a run whose events end with a `verdict` shows it on its training card (the three contenders as a
table, the verdict in words), and `v` opens held-out items side by side. The run folder is written by the
project's own EventWriter and report code; tests/e2e/test_learned.py drives the same card from a real run."""

from __future__ import annotations

import pytest

from tuitune.core.evaluation.contenders import EvalItem
from tuitune.core.evaluation.metrics import score
from tuitune.core.evaluation.report import EvalReport, ModelResult, save_report
from tuitune.core.training.config import TrainConfig
from tuitune.core.training.events import EventWriter
from tuitune.settings import load_settings
from tuitune.tui.app import make_app

RUN = "20260101-000000-lora-abcd"


def _run_folder(project) -> dict:
    d = project / "runs" / RUN
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(TrainConfig(eval=True).to_yaml(), encoding="utf-8")
    items = [EvalItem([{"role": "user", "content": f"Who are you? ({i})"}], "I am {{name}}, made by {{author}}.")
             for i in range(6)]
    refs = [it.reference for it in items]
    report = EvalReport(RUN, items, tokenizer="13a")
    for role, name, out in (("base", "smollm2", "I am an AI assistant."), ("few_shot", "smollm2 + 5-shot",
                            "I am {{name}}."), ("tuned", RUN, "I am {{name}}, made by {{author}}.")):
        report.results.append(ModelResult(name, "transformers", score([out] * 6, refs), [out] * 6, 1.0, role=role))
    report.verdict = {"code": "tuned_wins", "text": "tuned beats base and few-shot on 6 held-out items (chrF ...)"}
    save_report(report, d)
    w = EventWriter(d)
    w.emit("started", pid=1, method="lora", base="smollm2", device="cpu", gpus=0, checkpoint=None)
    w.emit("step", step=1, max_steps=1, loss=1.0, tokens_per_second=10.0, eta_seconds=0)
    verdict = {"verdict": "tuned_wins", "summary": report.verdict["text"], "report": "eval/report.json",
               "contenders": {r.role: r.summary() for r in report.results}}
    w.emit("verdict", **verdict)
    w.emit("done", step=1, metrics={}, adapter=None, merged=None)
    return verdict


@pytest.fixture
def app(tmp_path, home):
    return make_app(load_settings(project=tmp_path / "proj", home=home))


async def test_training_card_shows_the_verdict_and_held_out_items(app, tmp_path):
    from textual.widgets import DataTable, Static

    from tuitune.tui.widgets.verdict import HeldOutItems, VerdictView

    verdict = _run_folder(tmp_path / "proj")
    async with app.run_test(size=(120, 40)) as pilot:
        app.screen.follow_run(RUN)
        await pilot.pause(1.5)
        view = app.screen.query_one(f"#run-{RUN}").query_one(VerdictView)
        table = view.query_one(DataTable)
        assert table.row_count == 3
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(3)]
        assert [r[0] for r in rows] == ["base", "few-shot", "tuned"]
        chrf = [float(r[1]) for r in rows]
        assert chrf == [round(verdict["contenders"][k]["chrf"], 1) for k in ("base", "few_shot", "tuned")]
        assert chrf[2] == 100.0 and chrf[0] < chrf[1] < chrf[2]
        words = str(view.query_one("#verdict-words", Static).render())
        assert "tuned beats base and few-shot" in words
        view.focus()
        await pilot.press("v")
        await pilot.pause()
        assert isinstance(app.screen, HeldOutItems)
        shown = "\n".join(str(s.render()) for s in app.screen.query(Static))
        assert "Who are you? (0)" in shown and "reference" in shown and "I am an AI assistant." in shown
        assert "few-shot" in shown and "I am {{name}}, made by {{author}}." in shown
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HeldOutItems)


async def test_card_says_what_a_trained_run_is_doing(app, tmp_path, monkeypatch):
    """After its last step the worker merges, checks and judges for minutes: the card says which, with counts,
    instead of a step counter that stands still."""
    from textual.widgets import Static

    from tuitune.core.training import jobs

    d = tmp_path / "proj" / "runs" / RUN
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(TrainConfig(eval=True).to_yaml(), encoding="utf-8")
    w = EventWriter(d)
    w.emit("started", pid=1, method="lora", base="smollm2", device="cpu", gpus=0, checkpoint=None)
    w.emit("step", step=6, max_steps=6, loss=0.25, tokens_per_second=10.0, eta_seconds=0)
    w.emit("phase", phase="evaluating", message="held-out verdict: generating with smollm2 + 5-shot: 8/27 answers")
    monkeypatch.setattr(jobs, "worker_alive", lambda path: True)  # the worker is busy judging
    async with app.run_test(size=(120, 40)) as pilot:
        app.screen.follow_run(RUN)
        await pilot.pause(1.5)
        text = str(app.screen.query_one(f"#run-{RUN}").query_one("#train-status", Static).render())
        assert "generating with smollm2 + 5-shot: 8/27 answers" in text and "trained 6/6 steps" in text
        assert "ETA" not in text
