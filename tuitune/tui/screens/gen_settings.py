"""Answer settings for the chat screen: temperature, top-p, max tokens, seed, stop strings (every model)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, Static


class GenSettings(ModalScreen):
    """Dismisses with the new GenParams, or None when cancelled."""

    BINDINGS: ClassVar[list[Binding]] = [Binding("ctrl+s", "apply", "Apply", priority=True),
                                         Binding("escape", "cancel", "Cancel")]

    def __init__(self, params):
        super().__init__()
        self.params = params

    def compose(self) -> ComposeResult:
        from tuitune.core.serving.gen_settings import LABELS, form_values

        values = form_values(self.params)
        with Vertical(id="seed-form"):
            yield Static("[b]Answer settings[/b] — for every model on this screen, from the next answer. "
                         "Enter or Ctrl+S applies.")
            for name, label in LABELS.items():
                yield Label(label)
                yield Input(values[name], id=f"gen-{name}")
            yield Static("", id="gen-error")
        yield Footer()

    def on_input_submitted(self) -> None:
        self.action_apply()

    def action_apply(self) -> None:
        from tuitune.core.serving.gen_settings import LABELS, params_from_form

        typed = {name: self.query_one(f"#gen-{name}", Input).value for name in LABELS}
        try:
            params = params_from_form(typed, self.params)
        except ValueError as e:
            self.query_one("#gen-error", Static).update(Text(str(e), style="red"))
            return
        self.dismiss(params)

    def action_cancel(self) -> None:
        self.dismiss(None)
