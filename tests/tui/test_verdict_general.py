"""Pilot: the verdict view says the forgetting check's line (general answers, tuned vs base) and its warning."""

from __future__ import annotations

from textual.app import App

from tuitune.core.evaluation.forgetting import GeneralQuestion, compare, event_fields
from tuitune.tui.widgets.verdict import VerdictView


class One(App):
    def __init__(self, verdict, run_dir):
        super().__init__()
        self.verdict, self.run_dir = verdict, run_dir

    def compose(self):
        yield VerdictView(self.verdict, self.run_dir)


def _verdict(lost: int) -> dict:
    qs = [GeneralQuestion(f"q{i}", [f"a{i}"]) for i in range(18)]
    right = [f"a{i}" for i in range(18)]
    general = event_fields(compare(qs, right, ["no"] * lost + right[lost:]))
    return {"verdict": "tuned_wins", "summary": "tuned beats base and few-shot", "general": general}


async def test_the_general_line_and_its_warning_show_under_the_verdict(tmp_path):
    from textual.widgets import Static

    app = One(_verdict(lost=5), tmp_path)
    async with app.run_test(size=(120, 30)):
        text = str(app.query_one("#verdict-general", Static).render())
        assert "general answers: tuned 13/18 vs base 18/18 right" in text
        assert "warning: the tuned model lost general answers (5 fewer of 18 right" in text


async def test_no_warning_when_the_tuned_model_did_not_lose_clearly(tmp_path):
    from textual.widgets import Static

    app = One(_verdict(lost=1), tmp_path)
    async with app.run_test(size=(120, 30)):
        text = str(app.query_one("#verdict-general", Static).render())
        assert "tuned 17/18 vs base 18/18" in text and "warning" not in text
    old = One({"verdict": "tuned_wins", "summary": "s"}, tmp_path)  # a run from before the check: no line
    async with old.run_test(size=(120, 30)):
        assert not old.query("#verdict-general")
