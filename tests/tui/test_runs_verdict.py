"""Pilot: `/runs` in the app lists each run with its base model and its held-out verdict in words, like
`tuitune runs` (issue 21 #19); text from the run (the verdict, errors) is shown as text, not markup."""

from __future__ import annotations

from tuitune.core.training.config import TrainConfig
from tuitune.core.training.events import EventWriter
from tuitune.settings import load_settings
from tuitune.tui.app import make_app


def _run(project, run_id: str, summary: str) -> None:
    d = project / "runs" / run_id
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(TrainConfig(base="my-base [v2]", max_steps=2).to_yaml(), encoding="utf-8")
    w = EventWriter(d)
    w.emit("started", pid=1, method="lora", base="my-base [v2]", device="cpu", gpus=0, checkpoint=None)
    w.emit("step", step=2, max_steps=2, loss=0.5, tokens_per_second=10.0, eta_seconds=0)
    w.emit("verdict", verdict="tuned_wins", summary=summary, report=None, contenders={})
    w.emit("done", step=2, metrics={}, adapter=None, merged=None)


async def test_runs_lists_the_base_and_the_verdict_of_each_run(tmp_path, home):
    project = tmp_path / "proj"
    _run(project, "20260101-000000-lora-aaaa", "tuned beats base and few-shot on 9 held-out items | chrF +4.1")
    _run(project, "20260102-000000-lora-bbbb", "inconclusive on 8 held-out items [CI -1 to +3]")
    app = make_app(load_settings(project=project, home=home))
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.pause()
        app.screen.run_command("/runs")
        await pilot.pause(0.3)
        shown = " ".join(str(w.render()) for w in app.screen.query("Markdown MarkdownTableContent, Markdown *"))
        table = [w for w in app.screen.query("Markdown") if "20260101-000000-lora-aaaa" in w.source][-1]
    assert "| base | verdict |" in table.source
    for words in ("tuned beats base and few-shot on 9 held-out items", "chrF +4.1",
                  "inconclusive on 8 held-out items", "CI -1 to +3", "my-base", "v2"):
        assert words in shown, (words, shown[:2000])
