"""A transcript card that runs one synthesis round in a worker and shows it live: progress, counters and the
newest samples. Every sample is already committed when it shows up here."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.message import Message
from textual.widgets import Button, DataTable, ProgressBar, Static

from tuitune.core.words import plural
from tuitune.tui.events import RoundFailed, RoundFinished, SampleGenerated

SHOWN_COUNTERS = ("requests", "returned", "unparseable", "duplicates", "too_short", "too_long", "stored")


class RoundCard(Vertical):
    DEFAULT_CLASSES = "card"

    @dataclass
    class Finished(Message):
        status: str

    def __init__(self, n: int, *, teacher: str | None = None, **kw):
        super().__init__(**kw)
        self.n = n
        self.teacher = teacher
        self._loop: asyncio.AbstractEventLoop | None = None
        self._round = None

    def compose(self) -> ComposeResult:
        yield Static(f"Round: {plural(self.n, 'new sample')}", classes="card-title", id="round-title", markup=False)
        with Horizontal(classes="round-bar"):
            yield ProgressBar(total=self.n, show_eta=False, id="round-progress")
            yield Button("Stop", id="round-stop", variant="warning", compact=True)
        yield Static("starting the teacher…", id="round-status")
        table = DataTable(id="round-samples", show_cursor=False)
        table.add_columns("#", "instruction", "output")
        yield table

    def on_mount(self) -> None:
        self.run_round()

    @work(thread=True, exclusive=True, group="synth")
    def run_round(self) -> None:
        from tuitune.core.data.store import Store
        from tuitune.core.serving.vllm import ServingError
        from tuitune.core.synth.engine import RoundParams, SynthError, SynthRound
        from tuitune.core.synth.teacher import EMBEDDED, Teacher, TeacherError

        settings = self.app.settings
        try:
            cfg = self.app.engines.teacher_config(self.teacher)
        except (TeacherError, ServingError) as e:
            self.post_message(RoundFailed(str(e)))
            return
        if cfg.name == EMBEDDED:  # the pool pointed it at its embedded server
            self.app.call_from_thread(self._status, "embedded teacher ready (SmolLM2-135M: offline but weak; "
                                                    "a stronger teacher in [b]/settings[/b] gives better data)")
        store = Store.open(settings.project)

        async def go():
            teacher = Teacher(cfg)
            try:
                self._loop = asyncio.get_running_loop()
                self._round = SynthRound(store, teacher, RoundParams(n=self.n), project=settings.project,
                                         on_event=self._on_event)
                return await self._round.run()
            finally:
                await teacher.close()

        try:
            fin = asyncio.run(go())
        except (SynthError, TeacherError, ServingError) as e:
            self.post_message(RoundFailed(str(e)))
            return
        finally:
            store.close()
        self.post_message(RoundFinished(fin.round_id, {**fin.counters.to_dict(), "status": fin.status,
                                                       "message": fin.message}))

    def _on_event(self, ev) -> None:  # runs in the worker thread; post_message is thread-safe
        from tuitune.core.synth.engine import SampleStored

        if isinstance(ev, SampleStored):
            self.post_message(SampleGenerated(ev.sample.id, ev.sample.instruction, ev.sample.output,
                                              ev.counters.to_dict()))

    def _status(self, text: str) -> None:
        """Show `text` (Textual markup: whatever came from the teacher or the user is escaped by the caller)."""
        self.query_one("#round-status", Static).update(text)

    def _counters(self, c: dict) -> str:
        return " · ".join(f"{k.replace('_', ' ')} {c.get(k, 0)}" for k in SHOWN_COUNTERS)

    @on(SampleGenerated)
    def sample_generated(self, event: SampleGenerated) -> None:
        self.query_one("#round-progress", ProgressBar).update(progress=event.counters.get("stored", 0))
        self._status(self._counters(event.counters))
        table = self.query_one("#round-samples", DataTable)
        # cells as Text, never markup ("A [service] is" stays whole), cut to the card's width: no horizontal
        # scroll bar (its thumb was the stray glyph left in a finished card at 80 columns)
        room = max(24, (table.size.width or self.size.width or 80) - len(str(event.sample_id)) - 8)
        table.add_row(str(event.sample_id), _clip(event.instruction, room * 3 // 5), _clip(event.output, room * 2 // 5))
        if table.row_count > 8:
            table.remove_row(next(iter(table.rows)))

    @on(RoundFinished)
    def round_finished(self, event: RoundFinished) -> None:
        c = event.counters
        self.query_one("#round-stop", Button).display = False
        self.query_one("#round-progress", ProgressBar).update(progress=c.get("stored", 0))
        msg = f" — {escape(str(c['message']))}" if c.get("message") else ""
        self._status(f"[b]{escape(str(c.get('status')))}[/b]{msg}\n{self._counters(c)}\n"
                     f"Next: [b]/review[/b] the new samples.")
        self.post_message(self.Finished(c.get("status", "")))

    @on(RoundFailed)
    def round_failed(self, event: RoundFailed) -> None:
        self.query_one("#round-stop", Button).display = False
        self._status(f"[red]round failed:[/red] {escape(event.error)}\nWhat was stored stays; [b]/gen[/b] again "
                     f"resumes it.")
        self.post_message(self.Finished("failed"))

    @on(Button.Pressed, "#round-stop")
    def stop(self) -> None:
        if self._loop and self._round:
            self._loop.call_soon_threadsafe(self._round.cancel)
            self._status("stopping… (stored samples stay; [b]/gen[/b] resumes the round)")


def _clip(text: str, width: int) -> Text:
    """One line of plain text (no markup) at most `width` terminal cells (wide CJK characters count 2)."""
    out = Text(" ".join(text.split()), no_wrap=True)
    out.truncate(width, overflow="ellipsis")
    return out
