"""Answer settings for the chat and compare screens: temperature, top-p, max tokens, seed, stop strings (every
model). Compact: one row per setting (short label, one-line input) with its hint under it; the box scrolls
where the terminal is shorter than the form, so every field stays reachable at 80x24."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, Static

# field -> (short label, hint under it); short enough for one line each at 80 columns. The core's LABELS give the
# order and the names in error messages.
FIELDS: dict[str, tuple[str, str]] = {
    "temperature": ("Temperature", "0 = greedy: the same prompt, the same answer; up to 2"),
    "top_p": ("Top-p", "nucleus sampling: above 0, at most 1"),
    "max_tokens": ("Max tokens", "the longest answer, in tokens"),
    "seed": ("Seed", "empty: random; a number repeats sampled answers"),
    "stop": ("Stop strings", "split by |, \\n = newline; empty: the model's own end"),
}


class GenSettings(ModalScreen):
    """Dismisses with the new GenParams, or None when cancelled."""

    CSS_PATH = "../chat.tcss"
    BINDINGS: ClassVar[list[Binding]] = [Binding("ctrl+s", "apply", "Apply", priority=True),
                                         Binding("escape", "cancel", "Cancel")]

    def __init__(self, params):
        super().__init__()
        self.params = params

    def compose(self) -> ComposeResult:
        from tuitune.core.serving.gen_settings import LABELS, form_values

        values = form_values(self.params)
        with VerticalScroll(id="gen-box") as box:
            box.border_title = "Answer settings"
            yield Static("For every model on this screen, from the next answer. Enter or Ctrl+S applies, "
                         "Esc cancels.", classes="gen-intro")
            for name, label in LABELS.items():
                short, hint = FIELDS.get(name, (label.split(" (")[0], ""))
                with Horizontal(classes="gen-row"):
                    yield Label(short, classes="gen-label")
                    yield Input(values[name], id=f"gen-{name}", compact=True, select_on_focus=False)
                yield Static(Text(hint), classes="gen-hint")
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
            error = self.query_one("#gen-error", Static)
            error.update(Text(str(e), style="red"))
            error.scroll_visible()
            return
        self.dismiss(params)

    def action_cancel(self) -> None:
        self.dismiss(None)
