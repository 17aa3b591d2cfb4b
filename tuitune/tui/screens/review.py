"""Review screen: a virtualised list of samples and a detail pane; accept, reject with a reason, edit, rate,
filter, search and undo from the keyboard. Writes run in a worker (one at a time, in order) on the screen's
own database connection, so the UI never waits for SQLite.

Open it with `app.push_screen(ReviewScreen(store), callback)`; it dismisses with
`{"accepted": n, "rejected": n, "edited": n}`: what this session changed (after undo)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from functools import partial
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Container, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from tuitune.core.data import browse, review
from tuitune.core.data.samples import STATUSES, Sample
from tuitune.core.data.store import Store, StoreError
from tuitune.tui.screens.review_dialogs import EditScreen, LessonsScreen, RejectScreen
from tuitune.tui.widgets.sample_list import GLYPHS, SampleList, stars

STATUS_CYCLE: tuple[str | None, ...] = (None, *STATUSES)  # all, pending, accepted, rejected, edited
RATING_CYCLE: tuple[int | None, ...] = (None, 5, 4, 3, 2, 1, 0)  # any, exact stars, 0 = unrated
HEAD_ROWS = 200  # shown before the full list of matching ids has loaded

# (palette name, help, action) — every review action is in the command palette.
ACTIONS: tuple[tuple[str, str, str], ...] = (
    ("Review: accept", "Accept the sample and go to the next one (a)", "accept"),
    ("Review: reject", "Reject with a reason; the reason becomes a lesson (r)", "reject"),
    ("Review: edit", "Edit instruction, input and output in place (e)", "edit"),
    *((f"Review: rate {n}", f"Rate the sample {n} of 5 ({n})", f"rate({n})") for n in range(1, 6)),
    ("Review: clear rating", "Remove the rating (0)", "rate(0)"),
    ("Review: undo", "Undo the last review action (u)", "undo"),
    ("Review: filter by status", "Cycle all / pending / accepted / rejected / edited (f)", "cycle_status"),
    ("Review: filter by round", "Cycle through the synthesis rounds (o)", "cycle_round"),
    ("Review: filter by rating", "Cycle any / 5 … 1 stars / unrated (s)", "cycle_rating"),
    ("Review: search", "Find samples whose text contains a phrase (/)", "search"),
    ("Review: clear search and filters", "Show every sample (x)", "clear_filters"),
    ("Review: lessons", "What review taught so far: it goes into the next round's prompt (l)", "lessons"),
    ("Review: expand detail", "Show the sample full screen, or back (enter)", "toggle_detail"),
    ("Review: keys", "Show or hide every key of this screen (?)", "keys"),
    ("Review: back", "Leave the review screen (q)", "back"),
)


class ReviewCommands(Provider):
    """Command palette entries for the review screen."""

    def _commands(self):
        screen = self.screen
        for name, help_text, action in ACTIONS:
            yield name, help_text, partial(screen.run_action, action)

    async def discover(self) -> Hits:
        for name, help_text, callback in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._commands():
            if (score := matcher.match(name)) > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)


def detail_text(s: Sample) -> Content:
    """The full sample as styled text (no markup parsing: sample text is shown verbatim). Textual Content,
    not Rich Text: it renders several times faster, which is most of the cost of a cursor move."""
    parts: list[str | tuple[str, str]] = []
    status_style = {"accepted": "bold $success", "rejected": "bold $error", "edited": "bold $warning"}
    parts += [(f"#{s.id} ", "bold"), (f"{GLYPHS.get(s.status, '?')} {s.status}", status_style.get(s.status, "bold"))]
    parts.append((f"  {stars(s.rating)}", "$warning" if s.rating else "dim"))
    where = f"round {s.round_id}" if s.round_id is not None else "no round"
    parts.append((f"  {where} · {s.origin}\n", "dim"))
    if s.reason:
        parts += [("Reason: ", "bold $error"), s.reason + "\n"]

    def section(title: str, body: str) -> None:
        parts.append((f"\n{title}\n", "bold underline"))
        parts.append(body if body else ("(empty)", "dim italic"))
        parts.append("\n")

    if s.system:
        section("System", s.system)
    for i, (q, a) in enumerate(s.history, 1):
        section(f"History {i} · user", q)
        section(f"History {i} · assistant", a)
    section("Instruction", s.instruction)
    if s.input:
        section("Input", s.input)
    section("Output", s.output)
    if s.original and s.original.get("output", s.output) != s.output:
        section("Output before your edit", s.original.get("output") or "")
    return Content.assemble(*parts)


class DetailPane(VerticalScroll):
    """The full sample; enter shows it full screen (containers may not be maximized by default)."""

    ALLOW_MAXIMIZE = True


class ReviewScreen(Screen[dict]):
    """Review samples from the keyboard: 100,000 of them as smoothly as 10."""

    CSS_PATH = "../review.tcss"
    COMMANDS: ClassVar[set] = {ReviewCommands}
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (120, "-wide")]
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("a", "accept", "Accept"),
        Binding("r", "reject", "Reject"),
        Binding("e", "edit", "Edit"),
        Binding("1", "rate(1)", "Rate", key_display="1-5"),
        *(Binding(str(n), f"rate({n})", f"Rate {n}", show=False) for n in range(2, 6)),
        Binding("0", "rate(0)", "Clear rating", show=False),
        Binding("u", "undo", "Undo"),
        Binding("f", "cycle_status", "Status"),
        Binding("o", "cycle_round", "Round", show=False),
        Binding("s", "cycle_rating", "Stars", show=False),
        Binding("slash", "search", "Search", key_display="/"),
        Binding("x", "clear_filters", "Clear filters", show=False),
        Binding("l", "lessons", "Lessons", show=False),
        Binding("enter", "toggle_detail", "Expand", show=False),
        Binding("question_mark", "keys", "Keys", key_display="?", show=False),
        Binding("escape", "escape", "Back", show=False),
        Binding("q", "back", "Back"),
    ]

    def __init__(self, store: Store, *, status: str | None = "pending", round_id: int | None = None,
                 rating: int | None = None, search: str = "", name: str | None = None) -> None:
        super().__init__(name=name)
        self.store = store
        self.filter = browse.Filter(status=status, round_id=round_id, rating=rating, search=search)
        self.reader = browse.open_reader(store.path)
        self.writer = Store(store.path)  # this screen's own connection, used by one write at a time
        self._write_lock = asyncio.Lock()
        self._session: list[tuple[int, str]] = []  # (sample_id, status set) per action, for counts and undo
        self._total: int | None = None  # samples in the project (known once loaded)
        self._loading = True
        self._rounds: list[int] = []
        self._shown: int | None = None
        self._wanted: int | None = None

    # ---- layout -------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static("", id="review-bar")
        with Container(id="review-body"):
            with Vertical(id="review-left"):
                yield Input(placeholder="Search instruction, input and output; enter to apply, esc to close",
                            id="review-search")
                yield SampleList(self.reader, id="sample-list")
            with DetailPane(id="review-detail"):
                yield Static("", id="detail-text")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#review-search").display = False
        self.query_one(SampleList).focus()
        self.watch(self, "maximized", self._maximized_changed, init=False)
        self._update_bar()
        self.load()

    def on_unmount(self) -> None:
        self.reader.close()
        if not self._write_lock.locked():  # a write still running in its thread keeps its connection
            self.writer.close()

    @property
    def sample_list(self) -> SampleList:
        return self.query_one(SampleList)

    @property
    def counts(self) -> dict[str, int]:
        last: dict[int, str] = {}
        for sample_id, status in self._session:
            if status:
                last[sample_id] = status
        c = Counter(last.values())
        return {"accepted": c["accepted"], "rejected": c["rejected"], "edited": c["edited"]}

    # ---- loading ------------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="review-load")
    def load(self, keep_id: int | None = None, *, head: bool = True) -> None:
        """Load the ids matching the filter (~0.1 s for 100,000; a search scans the text). On opening, the
        first rows come first; the full list is loaded once they are on screen."""
        flt = self.filter
        conn = browse.open_reader(self.store.path)
        try:
            if head and keep_id is None:
                first = browse.ids(conn, flt, limit=HEAD_ROWS)
                if len(first) == HEAD_ROWS:
                    self.app.call_from_thread(self._loaded, flt, first, None, None, keep_id, final=False)
                    return
            ids = browse.ids(conn, flt)
            total = conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
            rounds = browse.round_ids(conn)
        finally:
            conn.close()
        self.app.call_from_thread(self._loaded, flt, ids, total, rounds, keep_id)

    def _loaded(self, flt: browse.Filter, ids: list[int], total: int | None, rounds: list[int] | None,
                keep_id: int | None, final: bool = True) -> None:
        if flt != self.filter:  # the filter changed meanwhile; a newer load is on its way
            return
        if not final:
            self.sample_list.set_ids(ids, keep_id=self.sample_list.current_id, final=False)
            self._update_bar()
            self.call_after_refresh(self.load, head=False)  # the rest, once the first rows are painted
            return
        if self.sample_list.ids and keep_id is None:
            keep_id = self.sample_list.current_id  # the user may have moved while the rest loaded
        self._total, self._rounds = total, rounds
        self._loading = False
        empty = ("No samples in this project yet: import seeds or generate a round first (q to go back)."
                 if total == 0 else f"No samples match {self._describe_filter()}. f/o/s change the filter, "
                                    "x clears it.")
        self.sample_list.set_ids(ids, keep_id=keep_id, empty_message=empty)
        if not ids:
            self._show(None)
        self._update_bar()

    def _describe_filter(self) -> str:
        f = self.filter
        parts = [f.status or "any status"]
        parts.append(f"round {f.round_id}" if f.round_id is not None else "any round")
        parts.append("unrated" if f.rating == 0 else f"{f.rating}★" if f.rating else "any rating")
        if f.search:
            parts.append(f"“{f.search}”")
        return " · ".join(parts)

    def _update_bar(self) -> None:
        lst = self.sample_list
        c = self.counts
        count = f"{len(lst.ids):,}" if lst.loaded else "…"
        pos = f"{lst.cursor + 1 if lst.ids else 0:,}/{count}"
        bar = Text()
        bar.append(" Review ", "bold reverse")
        bar.append(f" {self._describe_filter()} ")
        bar.append(f" {pos} of {'…' if self._total is None else format(self._total, ',')} ", "dim")
        bar.append(f" ✓{c['accepted']} ✗{c['rejected']} ✎{c['edited']}", "bold")
        if self._loading:
            bar.append("  loading…", "italic")
        bar.append("  ? keys", "dim")
        self.query_one("#review-bar", Static).update(bar, layout=False)

    # ---- detail -------------------------------------------------------------------------------------
    @on(SampleList.Highlighted)
    def _highlighted(self, event: SampleList.Highlighted) -> None:
        # Queued behind any other pending moves: with a key held down, only the last sample is rendered.
        self._wanted = event.sample_id
        self.call_later(self._show_wanted)

    def _show_wanted(self) -> None:
        self._show(self._wanted)
        self._update_bar()

    def _show(self, sample_id: int | None, *, force: bool = False) -> None:
        if sample_id == self._shown and not force:
            return
        self._shown = sample_id
        detail = self.query_one("#detail-text", Static)
        if sample_id is None:
            detail.update(Text("Nothing selected.", "dim"))
            return
        try:
            sample = browse.sample(self.reader, sample_id)
        except StoreError as e:
            detail.update(Text(str(e), "red"))
            return
        detail.update(detail_text(sample))
        pane = self.query_one("#review-detail", VerticalScroll)
        if pane.scroll_y:
            pane.scroll_home(animate=False)

    # ---- writes -------------------------------------------------------------------------------------
    @work(group="review-write")
    async def _write(self, sample_id: int | None, fn, *args, counts: bool = False, **kwargs) -> None:
        """Run one core review call off the UI thread, in order, then repaint what it changed."""
        async with self._write_lock:
            try:
                result = await asyncio.to_thread(fn, self.writer, *args, **kwargs)
            except StoreError as e:  # ReviewError is a StoreError; the message says what to do
                self.notify(str(e), title="Not saved", severity="error", timeout=6)
                return
            except sqlite3.OperationalError as e:  # e.g. locked for 30 s by another process
                self.notify(f"The project database did not take the change ({e}). Another tuitune process may "
                            "be writing to it: wait a moment and press the key again.",
                            title="Not saved", severity="error", timeout=8)
                return
        if fn is review.undo:
            if result is None:
                self.notify("Nothing to undo.", severity="warning")
                return
            if self._session and self._session[-1][0] == result.id:
                self._session.pop()
            self._refresh_sample(result.id)
            index = self.sample_list.index_of(result.id)
            if index is not None:
                self.sample_list.cursor = index
            else:
                self.notify(f"Undid the last change to #{result.id} (not in this filter).")
        else:
            self._session.append((sample_id, result.status if counts else ""))
            self._refresh_sample(sample_id)
        self._update_bar()

    def _refresh_sample(self, sample_id: int) -> None:
        self.sample_list.invalidate(sample_id)
        if self._shown == sample_id:
            self._show(sample_id, force=True)

    def _current(self) -> int | None:
        sample_id = self.sample_list.current_id
        if sample_id is None:
            self.notify("No sample selected: change the filter (f/o/s, x clears it).", severity="warning")
        return sample_id

    def action_accept(self) -> None:
        sample_id = self._current()
        if sample_id is None:
            return
        self._write(sample_id, review.accept, sample_id, counts=True)
        self.sample_list.next()

    def action_reject(self) -> None:
        sample_id = self._current()
        if sample_id is None:
            return

        def done(reason: str | None) -> None:
            if reason:
                self._write(sample_id, review.reject, sample_id, reason, counts=True)
                if self.sample_list.current_id == sample_id:
                    self.sample_list.next()

        self.app.push_screen(RejectScreen(sample_id), done)

    def action_edit(self) -> None:
        sample_id = self._current()
        if sample_id is None:
            return
        try:
            sample = browse.sample(self.reader, sample_id)
        except StoreError as e:
            self.notify(str(e), severity="error")
            return

        def done(fields: dict | None) -> None:
            if fields:
                self._write(sample_id, review.edit, sample_id, counts=True, **fields)

        self.app.push_screen(EditScreen(sample), done)

    def action_rate(self, n: int) -> None:
        sample_id = self._current()
        if sample_id is not None:
            self._write(sample_id, review.rate, sample_id, n or None)

    def action_undo(self) -> None:
        self._write(None, review.undo)

    # ---- filters and search -------------------------------------------------------------------------
    def _refilter(self, **changes) -> None:
        self.filter = browse.Filter(**{**self.filter.__dict__, **changes})
        self._loading = True
        self._update_bar()
        self.load(keep_id=self.sample_list.current_id)

    def action_cycle_status(self) -> None:
        i = STATUS_CYCLE.index(self.filter.status)
        self._refilter(status=STATUS_CYCLE[(i + 1) % len(STATUS_CYCLE)])

    def action_cycle_round(self) -> None:
        cycle = [None, *self._rounds]
        i = cycle.index(self.filter.round_id) if self.filter.round_id in cycle else 0
        if len(cycle) == 1:
            self.notify("No synthesis rounds in this project yet.")
        self._refilter(round_id=cycle[(i + 1) % len(cycle)])

    def action_cycle_rating(self) -> None:
        i = RATING_CYCLE.index(self.filter.rating)
        self._refilter(rating=RATING_CYCLE[(i + 1) % len(RATING_CYCLE)])

    def action_clear_filters(self) -> None:
        self._refilter(status=None, round_id=None, rating=None, search="")

    def action_search(self) -> None:
        box = self.query_one("#review-search", Input)
        box.display = True
        box.value = self.filter.search
        box.focus()

    @on(Input.Submitted, "#review-search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        event.input.display = False
        self.sample_list.focus()
        self._refilter(search=event.value.strip())

    async def action_escape(self) -> None:
        box = self.query_one("#review-search", Input)
        if box.display:
            box.display = False
            self.sample_list.focus()
        elif self.screen.maximized is not None:
            self.minimize()
        elif self.filter.search:
            self._refilter(search="")
        else:
            await self.action_back()

    def action_keys(self) -> None:
        if self.query("KeyPanel"):
            self.app.action_hide_help_panel()
        else:
            self.app.action_show_help_panel()

    def _maximized_changed(self, maximized) -> None:
        if maximized is None:  # back from the full-screen detail: keys move the list again
            self.sample_list.focus()

    def action_toggle_detail(self) -> None:
        if self.maximized is not None:
            self.minimize()
        else:
            self.maximize(self.query_one("#review-detail"), container=False)

    # ---- lessons and leaving ------------------------------------------------------------------------
    @work(group="review-lessons", exclusive=True)
    async def action_lessons(self) -> None:
        async with self._write_lock:
            try:
                lessons = await asyncio.to_thread(review.lessons, self.writer)
            except StoreError as e:
                self.notify(str(e), severity="error")
                return
        self.app.push_screen(LessonsScreen(lessons))

    async def action_back(self) -> None:
        async with self._write_lock:  # the lock is fair: every write queued before this one is done
            pass
        self.dismiss(self.counts)
