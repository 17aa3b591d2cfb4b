"""Save a chat exchange as a new seed, with the user's corrected answer (closes the loop)."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, Static, TextArea


class SaveExchange(ModalScreen):
    BINDINGS: ClassVar[list[Binding]] = [Binding("ctrl+s", "save", "Save seed", priority=True), Binding("escape", "cancel", "Cancel")]

    def __init__(self, prompt: str, answer: str):
        super().__init__()
        self.prompt, self.answer = prompt, answer

    def compose(self) -> ComposeResult:
        with Vertical(id="seed-form"):
            yield Label("Prompt")
            yield Static(self.prompt, markup=False)
            yield Label("Answer — correct it into the answer you want (the model's stays as the rejected one)")
            yield TextArea(self.answer, id="corrected")
        yield Footer()

    def action_save(self) -> None:
        from tuitune.core.serving.chat import save_exchange

        corrected = self.query_one("#corrected", TextArea).text.strip()
        task = self.app.store.get_task()
        sample = save_exchange(self.app.store, self.prompt, self.answer, corrected or None, as_seed=True,
                               system=task.system_prompt)
        self.dismiss(sample)

    def action_cancel(self) -> None:
        self.dismiss(None)
