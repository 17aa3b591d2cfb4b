"""Save a chat exchange as a new seed, in the shape of the project's seeds, with the user's corrected answer
(closes the loop: the model's answer stays as the rejected side of a preference pair).

The shape: when the seeds share one instruction and carry the text in `input` (e.g. "Translate the following
English text to Chinese" + the sentence), a chat message is split the same way: the fixed instruction, and the
message (without that instruction, if it was typed too) as the input. Every field is editable before saving."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Checkbox, Footer, Label, Static, TextArea

from tuitune.core.data.samples import Sample

_END = ".:：。 \t\n"


@dataclass(frozen=True)
class SeedShape:
    """How the project's seeds put a request: one fixed instruction with the text as input (`fixed`), or the
    whole request as the instruction (`fixed` empty)."""

    fixed: str = ""

    def split(self, prompt: str) -> tuple[str, str]:
        """(instruction, input) for a chat message, the way the seeds have them."""
        prompt = prompt.strip()
        if not self.fixed:
            return prompt, ""
        head = re.match(re.escape(self.fixed.rstrip(_END)) + r"[.:：。]?\s*", prompt, flags=re.IGNORECASE)
        rest = prompt[head.end():].strip() if head else prompt
        return (self.fixed, rest) if rest else (prompt, "")

    def describe(self) -> str:
        if not self.fixed:
            return "Your seeds put the whole request in the instruction; so does this one."
        return "Split like your seeds: their fixed instruction, your message as the input."


def seed_shape(seeds: Sequence[Sample]) -> SeedShape:
    """The shape most seeds have: a fixed instruction when at least half of them (two at least) share one and
    carry their text in `input`."""
    with_input = Counter(s.instruction.strip() for s in seeds if s.input.strip())
    if with_input:
        instruction, n = with_input.most_common(1)[0]
        if n >= 2 and 2 * n >= len(seeds):
            return SeedShape(instruction)
    return SeedShape()


def exchange_seed(instruction: str, input_: str, answer: str, corrected: str, *, system: str = "",
                  history: Sequence[tuple[str, str]] = ()) -> Sample:
    """The seed for a chat turn: the corrected answer as output; the model's answer kept as `original` when the
    person changed it (a preference pair: chosen = corrected, rejected = the model's). ValueError: what is
    missing."""
    if not instruction.strip():
        raise ValueError("the instruction must not be empty")
    output = corrected if corrected.strip() else answer
    if not output.strip():
        raise ValueError("the answer must not be empty: type the answer the model should have given")
    changed = output.strip() != answer.strip()
    return Sample(instruction=instruction.strip(), input=input_.strip(), output=output.strip(), system=system,
                  history=[tuple(p) for p in history], origin="seed", status="accepted",
                  original={"output": answer} if changed else None)


class SaveExchange(ModalScreen):
    """Dismisses with the stored seed (a Sample), or None when cancelled."""

    CSS_PATH = "../chat.tcss"
    BINDINGS: ClassVar[list[Binding]] = [Binding("ctrl+s", "save", "Save seed", priority=True),
                                         Binding("escape", "cancel", "Cancel")]

    def __init__(self, prompt: str, answer: str, *, history: Sequence[tuple[str, str]] = ()):
        super().__init__()
        self.prompt, self.answer, self.history = prompt, answer, list(history)

    def compose(self) -> ComposeResult:
        shape = seed_shape(self.app.store.samples(origin="seed"))
        instruction, input_ = shape.split(self.prompt)
        with VerticalScroll(id="save-box") as box:
            box.border_title = "Save as a seed"
            yield Static(shape.describe() + " Ctrl+S saves · Esc cancels · Tab: next field",
                         classes="save-hint", markup=False)
            yield Label("Instruction", classes="save-label")
            yield TextArea(instruction, id="save-instruction", soft_wrap=True, tab_behavior="focus")
            yield Label("Input (the text the instruction is about; may be empty)", classes="save-label")
            yield TextArea(input_, id="save-input", soft_wrap=True, tab_behavior="focus")
            yield Label("Answer (correct it; the model's own stays as the rejected one)", classes="save-label")
            yield TextArea(self.answer, id="corrected", soft_wrap=True, tab_behavior="focus")
            if self.history:
                seeds_have_history = any(s.history for s in self.app.store.samples(origin="seed"))
                yield Checkbox(f"keep the {len(self.history)} earlier turn(s) of this chat as the seed's history",
                               seeds_have_history, id="save-history")
            yield Label("", id="save-error")
        yield Footer()

    def on_mount(self) -> None:
        area = self.query_one("#corrected", TextArea)
        area.focus()
        area.move_cursor(area.document.end)

    def action_save(self) -> None:
        task = self.app.store.get_task()
        keep = self.query("#save-history")
        history = self.history if keep and keep.first(Checkbox).value else []
        try:
            sample = exchange_seed(self.query_one("#save-instruction", TextArea).text,
                                   self.query_one("#save-input", TextArea).text, self.answer,
                                   self.query_one("#corrected", TextArea).text, system=task.system_prompt,
                                   history=history)
        except ValueError as e:
            self.query_one("#save-error", Label).update(str(e))
            return
        self.dismiss(self.app.store.add_sample(sample))

    def action_cancel(self) -> None:
        self.dismiss(None)
