"""Messages typed while the chat's model server is still starting are not lost: they show as "waiting for the
server…", go out in order once it is ready (the real embedded model answers, in-process), or are marked "not
sent" if it fails to start. The real app and route (`/chat` on the main screen); the pool's start is held with
an Event (the injected fault: a slow start), then runs the real transformers backend."""

from __future__ import annotations

import threading

import pytest

from tuitune.core.serving.backends import TransformersBackend
from tuitune.core.serving.chat import GenParams
from tuitune.core.serving.errors import ServingError
from tuitune.core.serving.pool import EnginePool
from tuitune.settings import load_settings
from tuitune.tui.app import make_app
from tuitune.tui.screens.chat import WAITING, ChatScreen

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def loaded_embedded(embedded_model):
    """The embedded model in this process (loaded once for the module: loading is most of a test's time)."""
    backend = TransformersBackend(embedded_model, "smollm2-135m-instruct")
    backend.load()
    return backend


class HeldPool(EnginePool):
    """The app's pool, whose start waits for `go`, then fails if `fail` is set, or hands out the loaded model."""

    def __init__(self, settings, log_dir, backend):
        super().__init__(settings, log_dir)
        self.go = threading.Event()
        self.fail = False
        self.backend = backend

    def backends(self, specs, *, engine="auto", timeout=None):
        if not self.go.wait(60):
            raise ServingError("the test never let the start go on")
        if self.fail:
            raise ServingError("vLLM exited during start-up (test: the start fails)")
        assert [s.name for s in specs] == [self.backend.name]  # /chat without a run: the base model
        return [self.backend]


def texts(pane) -> list[str]:
    return [str(getattr(w, "source", None) or w.render()) for w in pane.children]


async def wait_until(pilot, done, seconds: float = 90) -> None:
    for _ in range(int(seconds / 0.1)):
        if done():
            return
        await pilot.pause(0.1)
    raise AssertionError("timed out")


async def type_line(pilot, text: str) -> None:
    await pilot.press(*("space" if c == " " else c for c in text), "enter")


@pytest.fixture
def held_app(tmp_path, home, loaded_embedded):
    settings = load_settings(project=tmp_path / "proj", home=home)
    pool = HeldPool(settings, tmp_path / "logs", loaded_embedded)
    return make_app(settings, engines=pool), pool


async def test_messages_typed_while_starting_wait_and_are_sent_in_order(held_app, monkeypatch):
    app, pool = held_app
    monkeypatch.setattr(ChatScreen, "default_params", lambda self: GenParams(temperature=0, max_tokens=2))
    async with app.run_test(size=(80, 24)) as pilot:
        await type_line(pilot, "/chat")
        await wait_until(pilot, lambda: isinstance(app.screen, ChatScreen))
        screen = app.screen
        box = screen.query_one("#chat-input")
        assert not box.disabled and screen.focused is box  # typing works while the server starts
        await type_line(pilot, "hello")
        await type_line(pilot, "how are you")
        await pilot.pause()
        pane = screen.panes[0]
        assert box.value == ""
        assert texts(pane) == ["hello", WAITING, "how are you", WAITING]
        assert screen.state == "starting" and not screen.sessions

        pool.go.set()
        await wait_until(pilot, lambda: screen.state == "ready" and not screen._queue and not screen._draining)
        history = screen.sessions[0].history
        assert [q for q, _ in history] == ["hello", "how are you"]  # both sent, in the order typed
        assert all(a.strip() for _, a in history)
        shown = texts(pane)
        assert WAITING not in shown
        assert shown == ["hello", history[0][1], "how are you", history[1][1]]  # each answer under its question


async def test_a_failed_start_says_the_messages_were_not_sent(held_app):
    app, pool = held_app
    pool.fail = True
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(ChatScreen())
        await pilot.pause()
        screen = app.screen
        await type_line(pilot, "are you there")
        pool.go.set()
        await wait_until(pilot, lambda: screen.state == "failed")
        await pilot.pause()
        shown = texts(screen.panes[0])
        assert shown[0] == "are you there"
        assert "not sent" in shown[1] and WAITING not in shown
        assert "vLLM exited during start-up" in str(screen.query_one("#chat-engine").render())
        await type_line(pilot, "still there")  # after the failure: said at once
        await pilot.pause()
        assert texts(screen.panes[0])[2:] == ["still there", shown[1]]
