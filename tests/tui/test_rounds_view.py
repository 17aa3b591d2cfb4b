"""Pilot tests of /rounds (the rounds view), /judge when nothing needs a score, and the guide's trend line.
Real SQLite; rounds made with synth.rounds.start_round, decisions with review.accept/reject; no model."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Markdown

from tuitune.core.curation import judgments
from tuitune.core.data import review
from tuitune.core.data.samples import Sample
from tuitune.core.synth.rounds import finish_round, start_round
from tuitune.settings import load_settings
from tuitune.tui.app import make_app
from tuitune.tui.screens.rounds import RoundsScreen


def transcript_text(app) -> str:
    return "\n".join(m.source for m in app.screen.query(Markdown))


@pytest.fixture
def two_rounds(store):
    """Round 1: 4 of 10 accepted (6 rejected "too short"); round 2, generated with that lesson: 8 of 10 accepted
    (one of them edited), judged 4 on average."""
    store.set_task(name="capitals", description="Name the capital of a country")
    plan = {1: (4, []), 2: (8, ["too short"])}
    for rid, (accepted, lessons) in plan.items():
        r = start_round(store, 10, {"lessons": lessons})
        assert r.id == rid
        store.add_samples(Sample(instruction=f"Round {rid} question {i}?", output=f"Answer {i}.", origin="synth",
                                 round_id=rid) for i in range(10))
        finish_round(store, rid, {"stored": 10})
        ids = [row[0] for row in store.conn.execute("SELECT id FROM samples WHERE round_id = ? ORDER BY id", (rid,))]
        for sid in ids[:accepted]:
            review.accept(store, sid)
        for sid in ids[accepted:]:
            review.reject(store, sid, "too short")
        if rid == 2:
            review.edit(store, ids[0], output="Answer 0, checked.")
            for sid in ids:
                judgments.save(store, judgments.Judgment(sid, 4, judge="strong/gpt-test", rubric="r"))
    return store


@pytest.fixture
def app(project, tmp_path):
    return make_app(load_settings(project=project, home=tmp_path / "home"))


async def test_rounds_view_lists_both_rounds_with_their_acceptance(app, two_rounds):
    async with app.run_test(size=(120, 30)) as pilot:
        pilot.app.screen.query_one("#prompt").value = "/rounds"
        await pilot.press("enter")
        await pilot.pause()
        screen = pilot.app.screen
        assert isinstance(screen, RoundsScreen)
        table = screen.query_one(DataTable)
        rows = {str(table.get_row_at(i)[0]): [str(c) for c in table.get_row_at(i)] for i in range(table.row_count)}
        assert set(rows) == {"1", "2"}
        # round, status, generated, reviewed, accepted, edited, rejected, acceptance, judge, teachers
        assert rows["1"][1:9] == ["finished", "10/10", "10", "4", "0", "6", "40%", "-"]
        assert rows["2"][1:9] == ["finished", "10/10", "10", "7", "1", "2", "80%", "4.0"]
        detail = str(screen.query_one("#rounds-detail").render())
        assert "Round 1" in detail and "6 × too short" in detail
        await pilot.press("down")
        await pilot.pause()
        detail = str(screen.query_one("#rounds-detail").render())
        assert "Round 2" in detail and "• too short" in detail  # the lesson round 2 was generated with
        await pilot.press("q")
        await pilot.pause()
        assert not isinstance(pilot.app.screen, RoundsScreen)

        # /judge with every sample of round 2 scored: says so, starts no teacher
        pilot.app.screen.query_one("#prompt").value = "/judge 2"
        await pilot.press("enter")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        assert "Judge: nothing to judge" in transcript_text(pilot.app)
        pilot.app.screen.query_one("#prompt").value = "/judge two"
        await pilot.press("enter")
        await pilot.pause()
        assert "give a round number" in transcript_text(pilot.app)

        # the guide's next step after review or a round carries the trend over the rounds
        pilot.app.screen.show_next_step(trend=True)
        await pilot.pause()
        last = pilot.app.screen.query(Markdown).last().source.replace("\\", "")  # Markdown escapes undone
        assert last.startswith("**Next:") and last.endswith(" — round 2: 80% accepted (round 1: 40%), judge mean 4.0")
