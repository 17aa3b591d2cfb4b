"""The license of an opt-in base model, shown before it is prepared: the notice text, Accept (a) or Cancel (c, Esc).
Cancel is focused first, so Enter without reading keeps things as they were. Dismisses with True (accepted) or False.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Static


class LicenseDialog(ModalScreen[bool]):
    CSS_PATH = "../license.tcss"
    BINDINGS: ClassVar[list[Binding]] = [Binding("a", "answer(True)", "Accept the terms"),
                                         Binding("c,escape", "answer(False)", "Cancel")]

    def __init__(self, name: str, license_name: str, notice: str, what_happens: str):
        super().__init__()
        self.model, self.license_name, self.notice, self.what_happens = name, license_name, notice, what_happens

    def compose(self) -> ComposeResult:
        with Vertical(id="license-box") as box:
            box.border_title = f"{self.model}: {self.license_name}"
            with VerticalScroll(id="license-text"):
                yield Static(self.notice, markup=False, id="license-notice")
            yield Static(self.what_happens, markup=False, id="license-what")
            with Horizontal(id="license-buttons"):
                yield Button("Accept (a)", id="license-accept", variant="warning")
                yield Button("Cancel (c)", id="license-cancel")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#license-cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "license-accept")

    def action_answer(self, accepted: bool) -> None:
        self.dismiss(accepted)
