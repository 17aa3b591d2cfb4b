"""Pilot tests of the judge in the review screen: scores in the list and the detail, the worst-first sort, the
score filter, the agreement line in the header, and a bulk accept from the judge's offer, undone in one key.
Real SQLite (the `store` fixture), verdicts stored with judgments.save, decisions made with review.accept/reject."""

from __future__ import annotations

import pytest

from tuitune.core.curation import agreement as ag
from tuitune.core.curation import judgments
from tuitune.core.data import browse, review
from tuitune.core.data.samples import Sample
from tuitune.settings import load_settings
from tuitune.tui.app import make_app
from tuitune.tui.screens.review import ReviewScreen
from tuitune.tui.screens.review_dialogs import BulkScreen

PENDING_SCORES = [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, None, None, None]  # None: not scored


def state(store) -> dict[int, tuple]:
    return {s.id: (s.status, s.reason, s.rating, s.decided_by, s.instruction, s.output) for s in store.samples()}


@pytest.fixture
def judged(store, project):
    """40 accepted samples the judge scored 5, 10 rejected it scored 1 (all decided by a human), and 13 pending
    ones with the scores above: enough agreement for a bulk accept of the pending samples scored >= 2."""
    store.set_task(name="capitals", description="Name the capital of a country")
    n = 50 + len(PENDING_SCORES)
    store.add_samples(Sample(instruction=f"What is the capital of country {i}?", output=f"City {i}.", origin="synth")
                      for i in range(n))
    ids = [r[0] for r in store.conn.execute("SELECT id FROM samples ORDER BY id")]
    scores: dict[int, int | None] = {}
    for sid in ids[:40]:
        scores[sid] = 5
    for sid in ids[40:50]:
        scores[sid] = 1
    for sid, sc in zip(ids[50:], PENDING_SCORES):
        scores[sid] = sc
    for sid, sc in scores.items():
        if sc is not None:
            judgments.save(store, judgments.Judgment(sid, sc, critique=f"critique of #{sid}",
                                                     lesson="answer in one word" if sc == 1 else "",
                                                     judge="strong/gpt-test", rubric="built-in:judge@x"))
    for sid in ids[:40]:
        review.accept(store, sid)
    for sid in ids[40:50]:
        review.reject(store, sid, "wrong capital")
    pending = ids[50:]
    return store, pending, scores


@pytest.fixture
def app(project, tmp_path):
    return make_app(load_settings(project=project, home=tmp_path / "home"))


async def settle(pilot) -> None:
    await pilot.pause()
    mine = [w for w in pilot.app.workers if isinstance(w.node, ReviewScreen)]
    await pilot.app.workers.wait_for_complete(mine)
    await pilot.pause()


async def press(pilot, *keys: str) -> None:
    for key in keys:
        await pilot.press(key)
        await settle(pilot)


def row_text(screen, index: int) -> str:
    lst = screen.sample_list
    return lst._render_row(index, False, 80, lst.rich_style).text


async def test_scores_sort_filter_header_and_bulk_accept_undone_in_one_key(app, judged):
    store, pending, scores = judged
    async with app.run_test(size=(100, 30)) as pilot:
        screen = ReviewScreen(store)  # pending
        pilot.app.push_screen(screen)
        await settle(pilot)
        lst = screen.sample_list
        assert lst.ids == pending
        for i, sid in enumerate(pending):  # the score column: the digit, or · when unscored
            cells = row_text(screen, i).split()
            assert cells[2] == (str(scores[sid]) if scores[sid] else "·") and f"#{sid}" in cells
        first = pending[0]  # scored 1, breaking a lesson
        assert "Judge: 1/5" in screen.detail.text and "strong/gpt-test" in screen.detail.text
        assert f"critique of #{first}" in screen.detail.text and "Breaks the lesson: answer in one word" in \
            screen.detail.text

        # the header: the judge's agreement with the 50 decisions
        expected = ag.summary_line(ag.agreement(judgments.decisions(store)))
        assert expected.startswith("judge vs you:") and screen.agreement_line == expected
        assert expected in str(screen.query_one("#review-judge").render())

        await press(pilot, "w")  # worst first, unscored last
        worst = sorted(pending, key=lambda sid: (scores[sid] or 6, sid))
        assert lst.ids == worst and lst.ids[0] == first and scores[lst.ids[-1]] is None
        assert "worst first" in str(screen.query_one("#review-bar").render())
        await press(pilot, "w")  # back to id order
        assert lst.ids == pending

        await press(pilot, "v")  # score 1
        assert lst.ids == [s for s in pending if scores[s] == 1]
        await press(pilot, "v", "v", "v", "v", "v")  # 2, 3, 4, 5, then 2 or lower
        assert lst.ids == [s for s in pending if scores[s] is not None and scores[s] <= 2]
        await press(pilot, "v")  # unscored
        assert lst.ids == [s for s in pending if scores[s] is None]
        await press(pilot, "v")  # any score again
        assert lst.ids == pending

        # the bulk dialog offers an accept; enter applies it
        before = state(store)
        await press(pilot, "b")
        dialog = pilot.app.screen
        assert isinstance(dialog, BulkScreen)
        offers = dialog.offers
        accept = next(o for o in offers if o.action == "accept")
        assert offers[0] is accept and accept.sentence in str(dialog.query_one("#bulk-offers").get_option_at_index(0)
                                                              .prompt)
        await press(pilot, "enter")
        assert pilot.app.screen is screen
        offered = [s for s in pending if scores[s] is not None and scores[s] >= accept.threshold]
        assert len(offered) == accept.count > 0
        after = state(store)
        assert [s for s in after if after[s] != before[s]] == offered
        assert all(after[s][0] == "accepted" and after[s][3] == "judge" for s in offered)
        assert lst.ids == [s for s in pending if s not in offered]  # the list shows what is still pending
        assert screen.agreement_line == expected  # the judge's own decisions do not count as yours

        await press(pilot, "u")  # one key undoes the whole bulk action, and nothing else
        assert state(store) == before
        assert lst.ids == pending
        await press(pilot, "q")


async def test_no_offer_says_why(app, store):
    """Without enough decisions the dialog says how many more are needed, and nothing changes."""
    store.add_samples([Sample(instruction="Capital of France?", output="Paris.", origin="synth")])
    judgments.save(store, judgments.Judgment(1, 5, judge="strong/gpt-test", rubric="r"))
    async with app.run_test(size=(100, 30)) as pilot:
        screen = ReviewScreen(store)
        pilot.app.push_screen(screen)
        await settle(pilot)
        assert "30 more reviewed samples" in screen.agreement_line
        await press(pilot, "b")
        dialog = pilot.app.screen
        assert isinstance(dialog, BulkScreen) and dialog.offers == []
        assert "30 more reviewed samples" in str(dialog.query_one("#bulk-none").render())
        await press(pilot, "escape")
        assert pilot.app.screen is screen and store.get_sample(1).status == "pending"


def test_score_filter_and_sort_in_sql(judged):
    store, pending, scores = judged
    flt = browse.Filter(status="pending", score=-2, sort="score")
    assert browse.ids(store, flt) == sorted((s for s in pending if scores[s] and scores[s] <= 2),
                                            key=lambda s: (scores[s], s))
    assert browse.ids(store, browse.Filter(status="pending", sort="score"), limit=3) == \
        sorted(pending, key=lambda s: (scores[s] or 6, s))[:3]
    assert browse.ids(store, browse.Filter(score=0)) == [s for s in pending if scores[s] is None]
    with pytest.raises(browse.BrowseError, match="score filter"):
        browse.Filter(score=7)
