"""Help: the slash commands and the keys."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Markdown

KEYS = """\
**Keys** — F1 help · F2 review · F3 train · F4 chat · F5 settings · F6 held-out answers of the latest verdict ·
Ctrl+N generate · Ctrl+P command palette · Ctrl+T light/dark · Ctrl+Q quit · Esc back. In the prompt, → accepts
a completion; PageUp / PageDown scroll the transcript (it follows new output until you scroll up). Typing
always goes to the prompt, even after a click elsewhere.

**The flow** — describe the task → 3+ seeds → `/gen 20` → `/review` (your reasons become lessons) → `/gen 50`
with the lessons → `/train` → `/chat` and `/compare` → `/eval` → `/export`. The judge scores each new round
(`/judge` scores the rest); in review, `w` sorts worst first, `v` filters by score, `b` bulk-decides what the judge's
agreement with you allows (`u` undoes it); `/rounds` shows acceptance per round.

The embedded teacher (SmolLM2-135M) works offline but writes weak data; plug in a stronger one in `/settings`.
"""


class HelpScreen(ModalScreen):
    BINDINGS: ClassVar[list[Binding]] = [Binding("escape,q,f1", "dismiss", "Close")]

    def __init__(self, commands_markdown: str):
        super().__init__()
        self.commands_markdown = commands_markdown

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Markdown(self.commands_markdown + "\n\n" + KEYS)  # the commands first: what a user looks for
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#help-box").focus()  # ↑/↓, PageUp/PageDown, Home/End scroll it
