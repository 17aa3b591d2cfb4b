"""A form to write one seed example (instruction, input, output), titled, in the shape of the project's seeds:
when they share a fixed instruction (text in the input), the form starts with it filled in."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, Static, TextArea

from tuitune.core.data.samples import Sample


class SeedForm(ModalScreen[Sample | None]):
    CSS_PATH = "../chat.tcss"
    BINDINGS: ClassVar[list[Binding]] = [Binding("ctrl+s", "save", "Save", priority=True),
                                         Binding("escape", "cancel", "Cancel")]

    def __init__(self, system: str = ""):
        super().__init__()
        self.system = system

    def compose(self) -> ComposeResult:
        from tuitune.tui.screens.save_exchange import seed_shape

        shape = seed_shape(self.app.store.samples(origin="seed"))
        with Vertical(id="seed-form") as form:
            form.border_title = "New seed example"
            yield Static("An example of what the tuned model should do. Ctrl+S saves · Esc cancels · "
                         "Tab: next field." + (" The instruction is your seeds' own; change it if this one "
                                               "differs." if shape.fixed else ""), classes="seed-hint")
            yield Label("Instruction (what the user asks)")
            yield TextArea(shape.fixed, id="instruction", tab_behavior="focus", soft_wrap=True)
            yield Label("Input (optional context, e.g. the text to translate)")
            yield TextArea(id="input", tab_behavior="focus", soft_wrap=True)
            yield Label("Output (the answer you want the model to give)")
            yield TextArea(id="output", tab_behavior="focus", soft_wrap=True)
            yield Label("", id="seed-error")
        yield Footer()

    def on_mount(self) -> None:
        first = "input" if self.query_one("#instruction", TextArea).text else "instruction"
        self.query_one(f"#{first}", TextArea).focus()

    def action_save(self) -> None:
        values = {k: self.query_one(f"#{k}", TextArea).text.strip() for k in ("instruction", "input", "output")}
        missing = [k for k in ("instruction", "output") if not values[k]]
        if missing:
            self.query_one("#seed-error", Label).update(f"{' and '.join(missing)} must not be empty")
            return
        self.dismiss(Sample(**values, system=self.system, origin="seed", status="accepted"))

    def action_cancel(self) -> None:
        self.dismiss(None)
