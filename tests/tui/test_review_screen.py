"""Pilot tests of the review screen: keyboard review with reasons, edit, rate, filters, search, undo, the
command palette, and what review teaches the next round's prompt. Plus snapshots at 80x24 and 160x48.
Real SQLite, real samples (LLaMA-Factory's Alpaca demo sets), no model."""

from __future__ import annotations

import json

import pytest

from tuitune.core.data import review
from tuitune.core.data.samples import Sample
from tuitune.core.data.store import Store
from tuitune.settings import load_settings
from tuitune.tui.app import make_app
from tuitune.tui.screens.review import ACTIONS, ReviewScreen
from tuitune.tui.screens.review_dialogs import EditScreen, RejectScreen

KEYS = {" ": "space", "/": "slash", ":": "colon", ".": "full_stop", ",": "comma", "!": "exclamation_mark",
        "-": "minus", "'": "apostrophe"}


def real_samples(real_fixtures, name: str, n: int) -> list[Sample]:
    rows = json.loads((real_fixtures / name).read_text(encoding="utf-8"))[:n]
    return [Sample(instruction=r["instruction"], input=r["input"], output=r["output"], origin="synth")
            for r in rows]


def fill(store: Store, samples: list[Sample]) -> list[int]:
    """Two finished rounds; samples alternate between them; every 5th is already accepted with 5 stars."""
    for rid in (1, 2):
        store.conn.execute("INSERT INTO rounds (id, started_at, status) VALUES (?, '2026-01-01', 'finished')", (rid,))
    store.add_samples(s.with_(round_id=1 + i % 2, **({"status": "accepted", "rating": 5} if i % 5 == 4 else {}))
                      for i, s in enumerate(samples))
    return [r[0] for r in store.conn.execute("SELECT id FROM samples ORDER BY id")]


@pytest.fixture
def review_project(tmp_path, real_fixtures):
    project = tmp_path / "proj"
    store = Store.open(project)
    store.set_task(name="en-assistant", description="Answer general instructions helpfully in English")
    fill(store, real_samples(real_fixtures, "llamafactory_alpaca_en_demo.json", 30))
    yield project, store
    store.close()


@pytest.fixture
def review_app(review_project, tmp_path):
    project, _ = review_project
    return make_app(load_settings(project=project, home=tmp_path / "home"))


async def settle(pilot) -> None:
    """Wait until the review screen's workers (loads, writes) are done and the screen has repainted."""
    await pilot.pause()
    app = pilot.app
    mine = [w for w in app.workers if isinstance(w.node, ReviewScreen)]
    await app.workers.wait_for_complete(mine)
    await pilot.pause()


async def press(pilot, *keys: str) -> None:
    for key in keys:
        await pilot.press(key)
        await settle(pilot)


async def type_text(pilot, text: str) -> None:
    for ch in text:
        await pilot.press(KEYS.get(ch, ch))


async def open_review(pilot, store: Store, **kwargs) -> ReviewScreen:
    results: list = []
    screen = ReviewScreen(store, **kwargs)
    pilot.app.push_screen(screen, results.append)
    await settle(pilot)
    screen.results = results
    return screen


async def test_keyboard_review_with_reasons_edit_rate_undo_and_lessons(review_app, review_project):
    _, store = review_project
    pending = [s.id for s in store.samples(status="pending")]
    async with review_app.run_test(size=(80, 24)) as pilot:
        screen = await open_review(pilot, store)  # default filter: pending
        lst = screen.sample_list
        assert lst.ids == pending and lst.current_id == pending[0]
        first = store.get_sample(pending[0])
        assert first.instruction in screen.detail.text

        await press(pilot, "a")  # accept; the cursor moves on
        assert store.get_sample(pending[0]).status == "accepted"
        assert lst.current_id == pending[1]

        await press(pilot, "r")  # reject with a quick pick
        assert isinstance(pilot.app.screen, RejectScreen)
        await press(pilot, "2")
        assert pilot.app.screen is screen
        s = store.get_sample(pending[1])
        assert (s.status, s.reason) == ("rejected", review.COMMON_REASONS[1])
        assert lst.current_id == pending[2]

        await press(pilot, "r", "tab")  # reject with a typed reason
        await type_text(pilot, "answers a different question")
        await press(pilot, "enter")
        s = store.get_sample(pending[2])
        assert (s.status, s.reason) == ("rejected", "answers a different question")

        before = store.get_sample(pending[3]).output
        await press(pilot, "e")  # edit the output in place (the cursor starts at its end)
        assert isinstance(pilot.app.screen, EditScreen)
        await type_text(pilot, " Checked by a reviewer.")
        await press(pilot, "ctrl+s")
        s = store.get_sample(pending[3])
        assert s.status == "edited" and s.output == before + " Checked by a reviewer."
        assert s.original["output"] == before
        assert "Checked by a reviewer." in screen.detail.text

        await press(pilot, "4")  # rate, then undo the rating
        assert store.get_sample(pending[3]).rating == 4
        await press(pilot, "u")
        assert store.get_sample(pending[3]).rating is None
        assert store.get_sample(pending[3]).status == "edited"

        await press(pilot, "down", "j", "k", "3")  # j/k and arrows move; rate the sample under the cursor
        assert store.get_sample(pending[4]).rating == 3

        # what review taught: both reasons and the correction are lessons, and the next round's prompt has them
        lessons = review.lessons(store)
        assert review.COMMON_REASONS[1] in lessons and "answers a different question" in lessons
        assert any(x.startswith("The reviewer corrected the output") for x in lessons)
        from tuitune.core.synth import engine as synth

        params = synth.RoundParams()
        prompt = synth.messages_text(synth.generation_messages(synth.build_context(store, params), params, 0, 4))
        assert review.COMMON_REASONS[1] in prompt and "answers a different question" in prompt

        await press(pilot, "l")  # the lessons are visible from the review screen too
        assert "answers a different question" in str(pilot.app.screen.query_one("#lessons-text").render())
        await press(pilot, "escape", "q")
        assert screen.results == [{"accepted": 1, "rejected": 2, "edited": 1}]


def list_lines(screen) -> list[str]:
    """The review list as painted (text of each row on screen)."""
    lst = screen.sample_list
    return [lst.render_line(y).text for y in range(min(len(lst.ids), lst.scrollable_content_region.height))]


async def test_pending_filter_drops_reviewed_rows_and_keeps_the_cursor_on_the_next(review_app, review_project):
    _, store = review_project
    pending = [s.id for s in store.samples(status="pending")]
    async with review_app.run_test(size=(80, 24)) as pilot:
        screen = await open_review(pilot, store)  # default filter: pending
        lst = screen.sample_list
        await press(pilot, "a")  # accepted: it leaves the list, the cursor is on the next sample
        assert lst.ids == pending[1:] and lst.current_id == pending[1] and lst.cursor == 0
        assert f"#{pending[1]} " in screen.detail.text
        assert not any(f"#{pending[0]} " in line for line in list_lines(screen))
        assert "✓" not in "".join(list_lines(screen))  # no accepted row shown under "pending"
        await press(pilot, "r", "2")  # rejected: same
        assert lst.ids == pending[2:] and lst.current_id == pending[2]
        assert f"1/{len(pending) - 2}" in str(screen.query_one("#review-bar").render())

        await press(pilot, "j", "e")  # edited: it no longer matches but stays under the cursor to be rated ...
        await type_text(pilot, " ok")
        await press(pilot, "ctrl+s", "4")
        assert store.get_sample(pending[3]).status == "edited" and store.get_sample(pending[3]).rating == 4
        assert lst.current_id == pending[3] and pending[3] in lst.ids
        assert any(f"#{pending[3]} " in line and "✎" in line for line in list_lines(screen))
        await press(pilot, "k")  # ... and leaves once the cursor moves off it
        assert lst.ids == [pending[2], *pending[4:]] and lst.current_id == pending[2]

        await press(pilot, "u")  # undo the rating: still edited, still out of "pending"
        assert pending[3] not in lst.ids and store.get_sample(pending[3]).rating is None
        await press(pilot, "u")  # undo the edit: pending again, back in the list under the cursor
        assert store.get_sample(pending[3]).status == "pending"
        assert lst.ids == [pending[2], *pending[3:]] and lst.current_id == pending[3]
        assert f"#{pending[3]} " in screen.detail.text

        await press(pilot, "G", "a")  # the last one: the cursor goes to the one before
        assert lst.ids == [pending[2], *pending[3:-1]] and lst.current_id == pending[-2]
        await press(pilot, "f")  # another filter reloads from the database: same truth
        assert lst.ids == [s.id for s in store.samples(status="accepted")]


async def test_reviewing_every_pending_sample_empties_the_list(review_app, review_project):
    _, store = review_project
    n = len(store.samples(status="pending"))
    async with review_app.run_test(size=(80, 24)) as pilot:
        screen = await open_review(pilot, store)
        await pilot.press(*["a"] * n)  # no waiting between keys
        await settle(pilot)
        assert screen.sample_list.ids == [] and store.count(status="pending") == 0
        assert "No samples match pending" in list_lines_or_empty(screen)
        assert "Nothing selected" in screen.detail.text


def list_lines_or_empty(screen) -> str:
    return screen.sample_list.render_line(0).text


async def test_filters_search_and_clear(review_app, review_project):
    _, store = review_project
    async with review_app.run_test(size=(80, 24)) as pilot:
        screen = await open_review(pilot, store, status=None)
        lst = screen.sample_list
        assert len(lst.ids) == 30
        await press(pilot, "f")  # all -> pending
        assert lst.ids == [s.id for s in store.samples(status="pending")]
        await press(pilot, "f")  # -> accepted
        assert lst.ids == [s.id for s in store.samples(status="accepted")] and len(lst.ids) == 6
        await press(pilot, "f", "f", "f")  # rejected, edited, back to all
        assert len(lst.ids) == 30
        await press(pilot, "o")  # round 1
        assert lst.ids == [s.id for s in store.samples(round_id=1)]
        await press(pilot, "o", "o")  # round 2, then any round
        assert len(lst.ids) == 30
        await press(pilot, "s")  # 5 stars
        assert lst.ids == [s.id for s in store.samples(status="accepted")]
        await press(pilot, "x")
        await press(pilot, "enter")  # the detail full screen (long samples over SSH), escape back to the list
        assert screen.maximized is screen.query_one("#review-detail")
        await press(pilot, "escape")
        assert screen.maximized is None and screen.focused is lst and pilot.app.screen is screen

        await press(pilot, "slash")
        await type_text(pilot, "recycling")
        await press(pilot, "enter")
        expected = [s.id for s in store.samples() if "recycling" in (s.instruction + s.input + s.output).lower()]
        assert expected and lst.ids == expected
        assert "recycling" in screen.detail.text.lower()
        await press(pilot, "escape")  # the first escape clears the search, the second leaves
        assert len(lst.ids) == 30 and pilot.app.screen is screen

        await press(pilot, "slash")
        await type_text(pilot, "no sample says this")
        await press(pilot, "enter")
        assert lst.ids == [] and "No samples match" in lst.empty_message
        await press(pilot, "a")  # nothing selected: a warning, no crash, nothing written
        assert store.count(status="accepted") == 6


async def test_refusals_are_clear_and_leave_data_alone(review_app, review_project):
    _, store = review_project
    async with review_app.run_test(size=(80, 24)) as pilot:
        screen = await open_review(pilot, store)
        sid = screen.sample_list.current_id
        await press(pilot, "u")  # nothing to undo yet
        assert any("Nothing to undo" in n.message for n in pilot.app._notifications)

        await press(pilot, "r", "tab", "enter")  # an empty typed reason is refused; the dialog stays
        assert isinstance(pilot.app.screen, RejectScreen)
        await press(pilot, "escape")
        assert pilot.app.screen is screen and store.get_sample(sid).status == "pending"

        await press(pilot, "e")  # emptying the output is refused inside the dialog
        pilot.app.screen.query_one("#edit-output").text = "   "
        await press(pilot, "ctrl+s")
        assert isinstance(pilot.app.screen, EditScreen)
        assert "must not be empty" in str(pilot.app.screen.query_one("#edit-error").render())
        await press(pilot, "escape")
        assert store.get_sample(sid).status == "pending" and store.get_sample(sid).original is None


async def test_every_action_is_in_the_command_palette(review_app, review_project):
    _, store = review_project
    async with review_app.run_test(size=(80, 24)) as pilot:
        screen = await open_review(pilot, store)
        sid = screen.sample_list.current_id
        await press(pilot, "ctrl+p")
        await type_text(pilot, "review accept")
        await pilot.pause(0.3)
        await press(pilot, "enter")
        await settle(pilot)
        assert store.get_sample(sid).status == "accepted"
        # every key's action (escape only closes things; app.* are the app's own keys) has a palette entry
        mine = {b.action for b in ReviewScreen.BINDINGS if not b.action.startswith("app.")}
        assert mine - {"escape"} <= {a for _, _, a in ACTIONS}


# ---- snapshots (fixed data, no paths or times on screen) ------------------------------------------------

def _snapshot_app(tmp_path, real_fixtures):
    project = tmp_path / "snap"
    store = Store.open(project)
    ids = fill(store, real_samples(real_fixtures, "llamafactory_alpaca_zh_demo.json", 8)
               + real_samples(real_fixtures, "llamafactory_alpaca_en_demo.json", 8))
    review.reject(store, ids[1], review.COMMON_REASONS[2])
    review.rate(store, ids[2], 4)
    store.close()
    return make_app(load_settings(project=project, home=tmp_path / "home")), project


async def _open_for_snapshot(pilot, project, **kwargs) -> None:
    pilot.app.push_screen(ReviewScreen(Store.open(project), **kwargs))
    await settle(pilot)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_snapshot_review_screen(snap_compare, tmp_path, real_fixtures, size):
    app, project = _snapshot_app(tmp_path, real_fixtures)

    async def run_before(pilot):
        await _open_for_snapshot(pilot, project, status=None)
        await press(pilot, "down", "down")

    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_snapshot_reject_dialog(snap_compare, tmp_path, real_fixtures):
    app, project = _snapshot_app(tmp_path, real_fixtures)

    async def run_before(pilot):
        await _open_for_snapshot(pilot, project)
        await press(pilot, "r")

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_snapshot_edit_dialog(snap_compare, tmp_path, real_fixtures):
    app, project = _snapshot_app(tmp_path, real_fixtures)

    async def run_before(pilot):
        await _open_for_snapshot(pilot, project)
        await press(pilot, "e")
        pilot.app.screen.query_one("#edit-output").cursor_blink = False  # a steady cursor: a stable picture

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


async def test_leaving_right_after_keys_keeps_every_write(review_app, review_project):
    _, store = review_project
    pending = [s.id for s in store.samples(status="pending")]
    async with review_app.run_test(size=(80, 24)) as pilot:
        screen = await open_review(pilot, store)
        await pilot.press("a", "a", "5", "q")  # no waiting between keys: q waits for the queued writes
        await settle(pilot)
        assert screen.results == [{"accepted": 2, "rejected": 0, "edited": 0}]
        assert [store.get_sample(i).status for i in pending[:2]] == ["accepted", "accepted"]
        assert store.get_sample(pending[2]).rating == 5


async def test_empty_project_says_what_to_do(tmp_path):
    project = tmp_path / "empty"
    store = Store.open(project)
    app = make_app(load_settings(project=project, home=tmp_path / "home"))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_review(pilot, store)
        assert screen.sample_list.ids == []
        assert "import seeds or generate a round" in screen.sample_list.empty_message
        await press(pilot, "a", "e", "3")  # nothing to act on: warnings, no crash
        assert pilot.app.screen is screen
        await press(pilot, "q")
        assert screen.results == [{"accepted": 0, "rejected": 0, "edited": 0}]
    store.close()


async def test_collector_settings_last_only_while_the_screen_is_open(review_app, review_project):
    """The screen tunes Python's garbage collector for smooth keys (freeze, rarer young collections) and puts
    it back when it closes."""
    import gc

    _, store = review_project
    before = gc.get_threshold()
    async with review_app.run_test(size=(80, 24)) as pilot:
        screen = await open_review(pilot, store)
        assert gc.get_threshold()[0] > before[0] and gc.get_freeze_count() > 0
        await press(pilot, "q")
        assert pilot.app.screen is not screen
        assert gc.get_threshold() == before and gc.get_freeze_count() == 0
