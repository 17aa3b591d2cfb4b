"""The Textual app. Built by `make_app(settings)` so tests can construct it with a temp project."""

from __future__ import annotations

from textual.app import App

from tuitune.settings import Settings


class TuituneApp(App):
    """tuitune: a chat-style guide from seed examples to a fine-tuned model."""

    CSS_PATH = "app.tcss"
    TITLE = "tuitune"

    def __init__(self, settings: Settings):
        super().__init__()
        self.settings = settings

    def on_mount(self) -> None:
        from tuitune.tui.screens.main import MainScreen

        self.push_screen(MainScreen())


def make_app(settings: Settings) -> TuituneApp:
    return TuituneApp(settings)
