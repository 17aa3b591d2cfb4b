"""A form to write one seed example (instruction, input, output)."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, TextArea

from tuitune.core.data.samples import Sample


class SeedForm(ModalScreen[Sample | None]):
    BINDINGS: ClassVar[list[Binding]] = [Binding("ctrl+s", "save", "Save", priority=True), Binding("escape", "cancel", "Cancel")]

    def __init__(self, system: str = ""):
        super().__init__()
        self.system = system

    def compose(self) -> ComposeResult:
        with Vertical(id="seed-form"):
            yield Label("Instruction (what the user asks)")
            yield TextArea(id="instruction")
            yield Label("Input (optional context, e.g. the text to translate)")
            yield TextArea(id="input")
            yield Label("Output (the answer you want the model to give)")
            yield TextArea(id="output")
            yield Label("", id="seed-error")
        yield Footer()

    def action_save(self) -> None:
        values = {k: self.query_one(f"#{k}", TextArea).text.strip() for k in ("instruction", "input", "output")}
        missing = [k for k in ("instruction", "output") if not values[k]]
        if missing:
            self.query_one("#seed-error", Label).update(f"{' and '.join(missing)} must not be empty")
            return
        self.dismiss(Sample(**values, system=self.system, origin="seed", status="accepted"))

    def action_cancel(self) -> None:
        self.dismiss(None)
