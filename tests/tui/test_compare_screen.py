"""`/compare` is its own screen: two columns (tuned left, base right), greedy by default, each column its own
conversation, kept when the screen is left and opened again (Ctrl+L clears). Both columns answer with the real
embedded model in-process (one load, two names: the comparison logic is under test, not the tuning)."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest

from tuitune.core.serving.backends import TransformersBackend
from tuitune.settings import load_settings
from tuitune.tui.app import make_app
from tuitune.tui.screens.chat import ChatScreen
from tuitune.tui.screens.compare import CompareScreen

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]
RUN = "20260101-000000-test"


@pytest.fixture(scope="module")
def tuned_and_base(embedded_model):
    tuned = TransformersBackend(embedded_model, "tuned-model")
    tuned.load()
    base = copy.copy(tuned)  # the same loaded weights (and one lock: one answer at a time in this process)
    base.name = "base-model"
    return tuned, base


async def wait_until(pilot, done, seconds: float = 120) -> None:
    for _ in range(int(seconds / 0.1)):
        if done():
            return
        await pilot.pause(0.1)
    raise AssertionError("timed out")


def idle(screen) -> bool:
    return screen.state == "ready" and not screen._queue and not screen._draining and not screen.busy


def shown(pane) -> list[str]:
    return [w.source for w in pane.children]


async def open_compare(pilot, backends) -> CompareScreen:
    screen = CompareScreen(RUN, backends=list(backends))
    pilot.app.push_screen(screen)
    await wait_until(pilot, lambda: screen.state == "ready")
    screen._set_params(replace(screen.params, max_tokens=2))  # short answers: this test is about the screen
    return screen


async def ask(pilot, screen, text: str) -> None:
    box = screen.query_one("#chat-input")
    box.value = text
    await pilot.press("enter")
    await wait_until(pilot, lambda: idle(screen))


async def test_two_columns_greedy_by_default_and_each_keeps_its_history(tmp_path, home, tuned_and_base):
    app = make_app(load_settings(project=tmp_path / "proj", home=home))
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_compare(pilot, tuned_and_base)
        titles = [str(t.render()) for t in screen.query(".pane-title")]
        assert titles == ["tuned · tuned-model", "base · base-model"]
        assert screen.params.temperature == 0  # greedy unless asked otherwise
        assert "(greedy)" in str(screen.query_one("#chat-engine").render())
        assert len(screen.panes) == 2

        await ask(pilot, screen, "What is a Pod?")
        tuned, base = screen.sessions
        assert [q for q, _ in tuned.history] == [q for q, _ in base.history] == ["What is a Pod?"]
        assert tuned.history is not base.history  # two conversations
        # the same weights, greedy: the same answers (and each column shows its own)
        assert [a for _, a in tuned.history] == [a for _, a in base.history]
        for pane, session in zip(screen.panes, screen.sessions, strict=True):
            assert shown(pane) == [x for turn in session.history for x in turn]
        before = list(tuned.history)

        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ChatScreen)

        again = await open_compare(pilot, tuned_and_base)  # back to /compare: both conversations are there
        assert [s.history for s in again.sessions] == [before, before]
        assert shown(again.panes[0]) == [x for turn in before for x in turn]
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert all(not s.history for s in again.sessions) and not list(again.panes[0].children)


async def test_compare_without_a_finished_run_says_what_to_do(tmp_path, home):
    app = make_app(load_settings(project=tmp_path / "proj", home=home))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = CompareScreen(None)
        app.push_screen(screen)
        await pilot.pause()
        assert screen.state == "unavailable"
        assert "no finished training run" in str(screen.query_one("#chat-engine").render())
        assert screen.query_one("#chat-input").disabled
