"""The review screen's dialogs: the reason for a rejection, an in-place edit, the lessons so far, the judge's
bulk offers."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static, TextArea
from textual.widgets.option_list import Option

from tuitune.core.data import review
from tuitune.core.data.samples import Sample


class RejectScreen(ModalScreen[str | None]):
    """Why is this sample rejected? A quick pick (1-7 or enter) or a typed reason."""

    BINDINGS: ClassVar[list[Binding]] = [Binding("escape", "cancel", "Cancel"),
                *(Binding(str(i), f"pick({i - 1})", show=False) for i in range(1, len(review.COMMON_REASONS) + 1))]

    def __init__(self, sample_id: int) -> None:
        super().__init__(classes="review-modal")
        self.sample_id = sample_id

    def compose(self) -> ComposeResult:
        with Vertical(id="reject-box", classes="review-dialog"):
            yield Label(f"Reject #{self.sample_id} — why? Your reason becomes a lesson for the next round.",
                        classes="review-dialog-title")
            yield OptionList(*(Option(f"{i}  {r}", id=str(i - 1)) for i, r in enumerate(review.COMMON_REASONS, 1)),
                             id="reject-reasons")
            yield Input(placeholder="…or type a reason and press enter", id="reject-reason")
            yield Label("1-7 or enter: pick · tab: type your own · esc: cancel", classes="review-dialog-hint")

    def action_pick(self, index: int) -> None:
        if self.focused is self.query_one("#reject-reasons"):
            self.dismiss(review.COMMON_REASONS[index])

    @on(OptionList.OptionSelected, "#reject-reasons")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(review.COMMON_REASONS[int(event.option.id)])

    @on(Input.Submitted, "#reject-reason")
    def _typed(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(event.value.strip())
        else:
            self.notify("Type a reason, or pick one from the list.", severity="warning")

    def action_cancel(self) -> None:
        self.dismiss(None)


class EditScreen(ModalScreen[dict | None]):
    """Edit instruction, input and output in place; ctrl+s saves only what changed."""

    FIELDS = ("instruction", "input", "output")
    BINDINGS: ClassVar[list[Binding]] = [Binding("ctrl+s", "save", "Save", priority=True), Binding("escape", "cancel", "Cancel")]

    def __init__(self, sample: Sample) -> None:
        super().__init__(classes="review-modal")
        self.sample = sample

    def compose(self) -> ComposeResult:
        with Vertical(id="edit-box", classes="review-dialog"):
            yield Label(f"Edit #{self.sample.id} — ctrl+s save · esc cancel · tab next field",
                        classes="review-dialog-title")
            for name in self.FIELDS:
                yield Label(name.capitalize(), classes="edit-label")
                yield TextArea(getattr(self.sample, name), id=f"edit-{name}", soft_wrap=True,
                               show_line_numbers=False, tab_behavior="focus")
            yield Label("", id="edit-error")

    def on_mount(self) -> None:
        area = self.query_one("#edit-output", TextArea)
        area.focus()
        area.move_cursor(area.document.end)

    def action_save(self) -> None:
        values = {name: self.query_one(f"#edit-{name}", TextArea).text for name in self.FIELDS}
        if not values["instruction"].strip() or not values["output"].strip():
            self.query_one("#edit-error", Label).update("Instruction and output must not be empty.")
            return
        self.dismiss({k: v for k, v in values.items() if v != getattr(self.sample, k)})

    def action_cancel(self) -> None:
        self.dismiss(None)


class LessonsScreen(ModalScreen[None]):
    """What review taught so far (the lessons the next synthesis round's prompt includes)."""

    BINDINGS: ClassVar[list[Binding]] = [Binding("escape,q,l,enter", "close", "Close")]

    def __init__(self, lessons: list[str]) -> None:
        super().__init__(classes="review-modal")
        self.lessons = lessons

    def compose(self) -> ComposeResult:
        body = "\n".join(f"• {x}" for x in self.lessons) or "No lessons yet: reject or edit some samples."
        with Vertical(id="lessons-box", classes="review-dialog"):
            yield Label("Lessons for the next round's prompt", classes="review-dialog-title")
            with VerticalScroll():
                yield Static(Text(body), id="lessons-text")
            yield Label("esc: close", classes="review-dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)


BULK_REASON = "scored low by the judge"  # what a bulk reject records unless the reviewer types another reason


class BulkScreen(ModalScreen[tuple | None]):
    """The bulk actions the judge's agreement with you allows (agreement.bulk_offers): pick one to apply it to
    the pending samples its threshold selects. Dismisses with (offer, reason) or None."""

    BINDINGS: ClassVar[list[Binding]] = [Binding("escape,q", "cancel", "Cancel")]

    def __init__(self, offers: list, why_none: str = "") -> None:
        super().__init__(classes="review-modal")
        self.offers = offers
        self.why_none = why_none

    def compose(self) -> ComposeResult:
        with Vertical(id="bulk-box", classes="review-dialog"):
            yield Label("Bulk action from the judge's scores — one undoable step (u)", classes="review-dialog-title")
            if self.offers:
                yield OptionList(*(Option(Text(f"{i}  {o.sentence}"), id=str(i - 1))
                                   for i, o in enumerate(self.offers, 1)), id="bulk-offers")
                if any(o.action == "reject" for o in self.offers):
                    yield Label("Reason a bulk reject records (it becomes a lesson):", classes="edit-label")
                    yield Input(BULK_REASON, id="bulk-reason")
                yield Label("enter: apply the highlighted one · esc: cancel", classes="review-dialog-hint")
            else:
                yield Static(Text(self.why_none or "no bulk action is safe yet"), id="bulk-none")
                yield Label("esc: close", classes="review-dialog-hint")

    def on_mount(self) -> None:
        if self.offers:
            self.query_one("#bulk-offers").focus()

    @on(OptionList.OptionSelected, "#bulk-offers")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        offer = self.offers[int(event.option.id)]
        reason = ""
        if offer.action == "reject":
            reason = self.query_one("#bulk-reason", Input).value.strip() or BULK_REASON
        self.dismiss((offer, reason))

    @on(Input.Submitted, "#bulk-reason")
    def _reason_typed(self) -> None:
        self.query_one("#bulk-offers").focus()  # back to the offers: enter there applies one

    def action_cancel(self) -> None:
        self.dismiss(None)
