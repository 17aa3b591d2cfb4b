"""The Textual app. Built by `make_app(settings)` so tests can construct it with a temp project."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from tuitune.settings import Settings


class TuituneApp(App):
    """tuitune: a chat-style guide from seed examples to a fine-tuned model."""

    CSS_PATH = "app.tcss"
    TITLE = "tuitune"
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("f1", "slash('help')", "Help"),
        Binding("f2", "slash('review')", "Review"),
        Binding("f3", "slash('train')", "Train"),
        Binding("f4", "slash('chat')", "Chat"),
        Binding("f5", "slash('settings')", "Settings"),
        Binding("ctrl+t", "toggle_dark", "Theme", show=False),
    ]

    def __init__(self, settings: Settings, store, engines):
        super().__init__()
        self.settings = settings
        self.store = store  # tuitune.core.data.store.Store of settings.project
        self.engines = engines  # tuitune.core.serving.pool.EnginePool: every vLLM server the app starts
        self.sub_title = self._header = str(settings.project)
        self._seen_version: tuple[int, int] | None = None  # the store's change marks at the last count
        if store.on_wait is None:
            store.on_wait = self.tell_waiting

    def tell_waiting(self, message: str) -> None:
        """A write waits for another process (an import in another terminal): say so instead of freezing
        silently. Called from whichever thread writes."""
        import threading

        if threading.get_ident() == self._thread_id:
            self.notify(message, title="Waiting", timeout=10, markup=False)
        else:
            self.call_from_thread(self.notify, message, title="Waiting", timeout=10, markup=False)

    def on_mount(self) -> None:
        from tuitune.tui.screens.main import MainScreen

        self.refresh_counts()
        self.set_interval(1.0, self.refresh_counts)  # cheap unless something changed the project
        self.push_screen(MainScreen())

    def refresh_counts(self, *, force: bool = False) -> None:
        """The header's counts ("17 samples · 1 round · ~/proj"), counted again when the project changed: a
        write on this app's connection (any screen) or a commit by another (a round's worker, the CLI in
        another terminal). Left alone when something else set the subtitle (a test's fixed one)."""
        import sqlite3

        from tuitune.core.synth.rounds import list_rounds
        from tuitune.core.words import plural

        if self.sub_title != self._header:
            return
        try:
            conn = self.store.conn
            version = (conn.total_changes, conn.execute("PRAGMA data_version").fetchone()[0])
            if version == self._seen_version and not force:
                return
            samples, rounds = self.store.count(), len(list_rounds(self.store))  # two counts, not all of stats()
        except sqlite3.Error:  # closed or busy: the next tick tries again
            return
        self._seen_version = version
        self.sub_title = self._header = (f"{plural(samples, 'sample')} · {plural(rounds, 'round')} · "
                                         f"{_short(self.settings.project)}")

    def on_unmount(self) -> None:
        self.engines.stop_all()
        self.store.close()

    @property
    def main_screen(self):
        from tuitune.tui.screens.main import MainScreen

        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                return screen
        return None

    def action_slash(self, command: str) -> None:
        """Run a slash command from anywhere (keys, palette): back to the main screen first, and shown in the
        transcript as if typed."""
        main = self.main_screen
        if main is None:
            return
        while self.screen is not main:
            self.pop_screen()
        main.run_command(f"/{command}", echo=True)

    def action_toggle_dark(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        from tuitune.tui.slash import SLASH_COMMANDS

        yield from super().get_system_commands(screen)
        yield SystemCommand("Light / dark", "Toggle the light and dark theme", self.action_toggle_dark)
        for s in SLASH_COMMANDS:
            if s.needs_arg:  # put the command in the input box for the user to complete
                yield SystemCommand(s.usage, s.help, lambda name=s.name: self.action_prefill(name))
            else:
                yield SystemCommand(s.usage, s.help, lambda name=s.name: self.action_slash(name))

    def action_prefill(self, command: str) -> None:
        main = self.main_screen
        if main is not None:
            while self.screen is not main:
                self.pop_screen()
            main.prefill(f"/{command} ")


def _short(path) -> str:
    """A path with the home folder as ~."""
    from pathlib import Path

    try:
        return "~/" + str(Path(path).resolve().relative_to(Path.home().resolve()))
    except ValueError:
        return str(path)


def make_app(settings: Settings, *, store=None, engines=None) -> TuituneApp:
    """The app on `settings.project`. Tests may pass their own Store and EnginePool (e.g. one that adopted a
    running server); by default both are opened here from the settings."""
    if store is None:
        from tuitune.core.data.store import Store

        store = Store.open(settings.project)
    if engines is None:
        from tuitune.core.serving.pool import EnginePool

        engines = EnginePool(settings, settings.project / "logs")
    return TuituneApp(settings, store, engines)
