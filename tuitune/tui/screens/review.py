"""Review screen: a virtualised list of samples and a detail pane; accept, reject with a reason, edit, rate,
filter, search and undo from the keyboard; the judge's score, critique and broken lesson beside each sample, a
filter and a worst-first sort by score, the judge's agreement with you in the header, and the bulk actions that
agreement allows (b), undone in one step like any action. Writes run in a worker (one at a time, in order) on the screen's
own database connection, so the UI never waits for SQLite.

Open it with `app.push_screen(ReviewScreen(store), callback)`; it dismisses with
`{"accepted": n, "rejected": n, "edited": n}`: what this session changed (after undo)."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
from collections import Counter
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Input, Static
from textual.worker import get_current_worker

from tuitune.core.data import browse, review
from tuitune.core.data.samples import STATUSES, Sample
from tuitune.core.data.store import Store, StoreError
from tuitune.tui.screens.review_commands import ACTIONS, ReviewCommands
from tuitune.tui.screens.review_dialogs import BulkScreen, EditScreen, LessonsScreen, RejectScreen
from tuitune.tui.widgets.detail_view import DetailView
from tuitune.tui.widgets.sample_detail import detail_text
from tuitune.tui.widgets.sample_list import SampleList

STATUS_CYCLE: tuple[str | None, ...] = (None, *STATUSES)  # all, pending, accepted, rejected, edited
RATING_CYCLE: tuple[int | None, ...] = (None, 5, 4, 3, 2, 1, 0)  # any, exact stars, 0 = unrated
SCORE_CYCLE: tuple[int | None, ...] = (None, 1, 2, 3, 4, 5, -2, 0)  # any, exact score, -2 = 2 or lower, 0 = unscored
BULK = -1  # a session entry for one bulk action (its ids are in ReviewScreen._bulks)
HEAD_ROWS = 200  # shown before the full list of matching ids has loaded
GC_YOUNG = 20_000  # allocations between young-generation collections while the screen is open (Python: 700)
__all__ = ["ACTIONS", "ReviewScreen", "detail_text"]

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
        Binding("v", "cycle_score", "Score filter", show=False),
        Binding("w", "sort_score", "Worst first", show=False),
        Binding("b", "bulk", "Bulk"),
        Binding("slash", "search", "Search", key_display="/"),
        Binding("x", "clear_filters", "Clear filters", show=False),
        Binding("l", "lessons", "Lessons", show=False),
        Binding("enter", "toggle_detail", "Expand", show=False),
        Binding("question_mark", "keys", "Keys", key_display="?", show=False),
        Binding("escape", "escape", "Back", show=False),
        Binding("q", "back", "Back"),
        # The app's F1-F5 and Ctrl+Q still work here but stay out of the footer, which then fits 80 columns
        # with the palette key (? and the palette list them).
        Binding("ctrl+q", "app.quit", "Quit", show=False, priority=True),
        *(Binding(f"f{n}", f"app.slash('{name}')", name.capitalize(), show=False)
          for n, name in enumerate(("help", "review", "train", "chat", "settings"), 1)),
    ]

    def __init__(self, store: Store, *, status: str | None = "pending", round_id: int | None = None,
                 rating: int | None = None, search: str = "", score: int | None = None, sort: str = "id",
                 name: str | None = None) -> None:
        super().__init__(name=name)
        self.store = store
        self.filter = browse.Filter(status=status, round_id=round_id, rating=rating, search=search, score=score,
                                    sort=sort)
        self.reader = browse.open_reader(store.path)
        self.writer = Store(store.path, on_wait=store.on_wait)  # this screen's own connection, one write at a time
        self._write_lock = asyncio.Lock()
        self._session: list[tuple[int, str]] = []  # (sample_id, status set) per action, for counts and undo
        self._total: int | None = None  # samples in the project (known once loaded)
        self._loading = True
        self._rounds: list[int] = []
        self._shown: int | None = None
        self._wanted: int | None = None
        self._written: dict[int, Sample] = {}  # each sample this screen changed, as it is now
        self._leaving: set[int] = set()  # no longer match the filter; they leave when the cursor moves off
        self._gc_threshold: tuple[int, ...] | None = None  # the collector's setting before this screen
        self._bulks: list[list[int]] = []  # the ids each bulk action of this screen changed (undo reloads them)
        self.agreement_line = ""  # the judge vs you, once computed (agreement.summary_line)

    # ---- layout -------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static("", id="review-bar")
        yield Static("", id="review-judge")
        with Container(id="review-body"):
            with Vertical(id="review-left"):
                yield Input(placeholder="Search instruction, input and output; enter to apply, esc to close",
                            id="review-search")
                yield SampleList(self.reader, id="sample-list")
            yield DetailView(id="review-detail")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#review-search").display = False
        self.query_one("#review-judge").display = False
        self.query_one(SampleList).focus()
        self.watch(self, "maximized", self._maximized_changed, init=False)
        self._update_bar()
        self.load()
        self.refresh_agreement()

    def on_unmount(self) -> None:
        gc.unfreeze()
        if self._gc_threshold is not None:
            gc.set_threshold(*self._gc_threshold)
        self.reader.close()
        if not self._write_lock.locked():  # a write still running in its thread keeps its connection
            self.writer.close()

    @property
    def sample_list(self) -> SampleList:
        return self.query_one(SampleList)

    @property
    def detail(self) -> DetailView:
        return self.query_one(DetailView)

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
                first = browse.sort_keys(conn, flt, limit=HEAD_ROWS)
                if len(first) == HEAD_ROWS:
                    self.app.call_from_thread(self._loaded, flt, first, None, None, keep_id, final=False)
                    return
            keys = browse.sort_keys(conn, flt)
            total = conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
            rounds = browse.round_ids(conn)
        finally:
            conn.close()
        self.app.call_from_thread(self._loaded, flt, keys, total, rounds, keep_id)

    def _key(self, sample_id: int) -> int:
        """The sample's place under the current sort (its score read from the database under "score")."""
        if self.filter.sort == "id":
            return sample_id
        return browse.key_of(sample_id, browse.score(self.reader, sample_id), self.filter.sort)

    def _set_ids(self, keys: list[int], keep_id: int | None, **kwargs) -> None:
        lst = self.sample_list
        if self.filter.sort == "id":
            lst.set_ids(keys, keep_id=keep_id, **kwargs)
        else:
            lst.set_ids(browse.ids_of(keys), keys=keys, keep_id=keep_id,
                        keep_key=self._key(keep_id) if keep_id is not None else None, **kwargs)

    def _loaded(self, flt: browse.Filter, keys: list[int], total: int | None, rounds: list[int] | None,
                keep_id: int | None, final: bool = True) -> None:
        if flt != self.filter:  # the filter changed meanwhile; a newer load is on its way
            return
        if not final:
            self._set_ids(keys, self.sample_list.current_id, final=False)
            self._update_bar()
            self.call_after_refresh(self.load, head=False)  # the rest, once the first rows are painted
            return
        if self.sample_list.ids and keep_id is None:
            keep_id = self.sample_list.current_id  # the user may have moved while the rest loaded
        self._total, self._rounds = total, rounds
        self._loading = False
        if self._written:  # a write may have landed after the query ran: the list shows what the filter says now
            now = set(keys)
            for sample_id, sample in self._written.items():
                key = self._key(sample_id)
                if self._matches(sample) or sample_id in self._leaving:
                    now.add(key)
                else:
                    now.discard(key)
            keys = sorted(now)
        self._set_ids(keys, keep_id, empty_message=self._empty_message())
        if not keys:
            self._show(None)
        self._update_bar()
        # What is alive now (Textual, the app, this screen) stays alive while the screen is open: keep it out of
        # the garbage collector's full passes, which otherwise stalled a held-down key every few presses
        # (tens of ms each over ~100,000 objects); and collect the young generation every 20,000 allocations
        # instead of 700 (a repaint allocates thousands of short-lived objects: 5-7 collections per key took
        # about a quarter of a key's time). Both undone when the screen closes.
        gc.freeze()
        if self._gc_threshold is None:
            self._gc_threshold = gc.get_threshold()
            gc.set_threshold(GC_YOUNG, *self._gc_threshold[1:])

    def _matches(self, sample: Sample) -> bool:
        score = browse.score(self.reader, sample.id) if self.filter.score is not None else None
        return self.filter.matches(sample, score)

    # ---- the judge's agreement with you -------------------------------------------------------------
    @work(thread=True, exclusive=True, group="review-agreement")
    def refresh_agreement(self) -> None:
        """The header's judge line (agreement.summary_line), in a thread: ~15 ms, but the first call imports
        scipy and scikit-learn (~1.5 s). Nothing is shown while the project has no scores."""
        conn = browse.open_reader(self.store.path)
        try:
            if not browse.has_judgments(conn):
                line = ""
            else:
                from tuitune.core.curation import agreement as ag
                from tuitune.core.curation import judgments

                line = ag.summary_line(ag.agreement(judgments.decisions(browse.ConnView(conn))))
        finally:
            conn.close()
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._show_agreement, line)

    def _show_agreement(self, line: str) -> None:
        self.agreement_line = line
        bar = self.query_one("#review-judge", Static)
        bar.display = bool(line)
        bar.update(Content.assemble((" Judge ", "bold reverse"), f" {line}"))

    def _empty_message(self) -> str:
        if self._total == 0:
            return "No samples in this project yet: import seeds or generate a round first (q to go back)."
        return f"No samples match {self._describe_filter()}. f/o/s/v change the filter, x clears it."

    def _describe_filter(self) -> str:
        f = self.filter
        parts = [f.status or "any status"]
        parts.append(f"round {f.round_id}" if f.round_id is not None else "any round")
        parts.append("unrated" if f.rating == 0 else f"{f.rating}★" if f.rating else "any rating")
        if f.score is not None:  # shown only when set: the bar fits 80 columns
            parts.append(browse.describe_score(f.score))
        if f.sort == "score":
            parts.append("worst first")
        if f.search:
            parts.append(f"“{f.search}”")
        return " · ".join(parts)

    def _update_bar(self) -> None:
        lst = self.sample_list
        c = self.counts
        count = f"{len(lst.ids):,}" if lst.loaded else "…"
        pos = f"{lst.cursor + 1 if lst.ids else 0:,}/{count}"
        parts: list[str | tuple[str, str]] = [
            (" Review ", "bold reverse"), f" {self._describe_filter()} ",
            (f" {pos} of {'…' if self._total is None else format(self._total, ',')} ", "dim"),
            (f" ✓{c['accepted']} ✗{c['rejected']} ✎{c['edited']}", "bold"),
        ]
        if self._loading:
            parts.append(("  loading…", "italic"))
        parts.append(("  ? keys", "dim"))
        self.query_one("#review-bar", Static).update(Content.assemble(*parts), layout=False)

    # ---- detail -------------------------------------------------------------------------------------
    @on(SampleList.Highlighted)
    def _highlighted(self, event: SampleList.Highlighted) -> None:
        # Queued behind any other pending moves: with a key held down, only the last sample is rendered.
        self._wanted = event.sample_id
        self.call_later(self._show_wanted)
        if self._leaving:
            self.call_later(self._sweep)

    def _show_wanted(self) -> None:
        self._show(self._wanted)
        self._update_bar()

    def _show(self, sample_id: int | None, *, force: bool = False) -> None:
        if sample_id == self._shown and not force:
            return
        self._shown = sample_id
        detail = self.detail
        if sample_id is None:
            detail.update(Content.styled("Nothing selected.", "dim"))
            return
        try:
            sample = browse.sample(self.reader, sample_id)
        except StoreError as e:
            detail.update(Content.styled(str(e), "$error"))
            return
        detail.update(detail_text(sample, browse.judgment(self.reader, sample_id)))

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
            if self._session and self._session[-1][0] == BULK:  # the whole bulk action is undone: reload
                self._session.pop()
                changed = self._bulks.pop()
                self._forget(changed)
                self.notify(f"Undid the bulk action: {len(changed):,} samples are pending again.")
                self._reload()
                return
            if self._session and self._session[-1][0] == result.id:
                self._session.pop()
            self._refresh_sample(result.id)
            if self._settle(result):
                self.sample_list.cursor = self.sample_list.index_of(result.id)
            else:
                self.notify(f"Undid the last change to #{result.id} (not in this filter).")
        else:
            self._session.append((sample_id, result.status if counts else ""))
            self._refresh_sample(sample_id)
            self._settle(result, moved_on=fn in (review.accept, review.reject))
        self._update_bar()
        if counts or fn is review.undo:  # a decision changed: the judge's agreement with you too
            self.refresh_agreement()

    def _forget(self, sample_ids: list[int]) -> None:
        """These samples changed outside the single-sample path (a bulk action or its undo): the database says
        what they are now, not what this screen last wrote."""
        for sample_id in sample_ids:
            self._written.pop(sample_id, None)
            self._leaving.discard(sample_id)
            if self._shown == sample_id:
                self._shown = None

    def _reload(self) -> None:
        self._loading = True
        self._update_bar()
        self.load(keep_id=self.sample_list.current_id)
        self.refresh_agreement()
        self._show(self.sample_list.current_id, force=True)

    def _settle(self, sample: Sample, *, moved_on: bool = False) -> bool:
        """Keep the list true to the filter after `sample` changed: a sample that no longer matches (accepted
        under "pending") leaves the list, but not from under the cursor after an edit or a rating: then it
        leaves when the cursor moves off it. Accept and reject move on (also from the last row, where the
        cursor takes the row before). One that matches again (undo) comes back. True if it matches."""
        self._written[sample.id] = sample
        lst = self.sample_list
        if self._matches(sample):
            self._leaving.discard(sample.id)
            lst.insert(sample.id, self._key(sample.id) if lst.sorted_by_key else None)
            return True
        if sample.id == lst.current_id and not moved_on:
            self._leaving.add(sample.id)
        else:
            self._leaving.discard(sample.id)
            lst.remove(sample.id)
            lst.empty_message = self._empty_message()
        return False

    def _sweep(self) -> None:
        """The cursor moved: the samples that left the filter go from the list now."""
        lst = self.sample_list
        for sample_id in sorted(self._leaving - {lst.current_id}):
            self._leaving.discard(sample_id)
            lst.remove(sample_id)
        lst.empty_message = self._empty_message()
        self._update_bar()

    def _refresh_sample(self, sample_id: int) -> None:
        self.sample_list.invalidate(sample_id)
        if self._shown == sample_id:
            self._show(sample_id, force=True)

    def _current(self) -> int | None:
        sample_id = self.sample_list.current_id
        if sample_id is None:
            self.notify("No sample selected: change the filter (f/o/s/v, x clears it).", severity="warning")
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
        self._leaving.clear()
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

    def action_cycle_score(self) -> None:
        i = SCORE_CYCLE.index(self.filter.score)
        self._refilter(score=SCORE_CYCLE[(i + 1) % len(SCORE_CYCLE)])

    def action_sort_score(self) -> None:
        """The judge's lowest scores first (unscored last), or back to id order."""
        self._refilter(sort="id" if self.filter.sort == "score" else "score")

    def action_clear_filters(self) -> None:
        self._refilter(status=None, round_id=None, rating=None, search="", score=None)

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

    # ---- bulk actions from the judge's scores --------------------------------------------------------
    @work(group="review-bulk", exclusive=True)
    async def action_bulk(self) -> None:
        """Offer the bulk actions the judge's agreement with your decisions allows (or say why none is)."""
        def offers():
            from tuitune.core.curation import agreement as ag
            from tuitune.core.curation import judgments

            conn = browse.open_reader(self.store.path)
            try:
                agr = ag.agreement(judgments.decisions(browse.ConnView(conn)))
                pending = [s for _, s in judgments.pending_scores(browse.ConnView(conn))]
            finally:
                conn.close()
            found = ag.bulk_offers(agr, pending)
            if found:
                return found, ""
            if not agr.enough:
                return [], ag.not_enough_sentence(agr)
            if not pending:
                return [], "no pending sample has a score yet: /judge in the main screen scores them"
            return [], ("no bulk action is safe yet: no threshold's precision interval on your decisions stays "
                        "above 0.90")

        found, why = await asyncio.to_thread(offers)
        self.app.push_screen(BulkScreen(found, why), self._bulk_chosen)

    def _bulk_chosen(self, choice: tuple | None) -> None:
        if choice:
            offer, reason = choice
            self._bulk(offer.action, offer.threshold, reason)

    @work(group="review-write")
    async def _bulk(self, action: str, threshold: int, reason: str) -> None:
        """Apply a bulk action to the pending samples its threshold selects now (accept: score >= T, reject:
        score <= T), as one undoable action; the list reloads."""
        from tuitune.core.curation import judgments

        def apply(store: Store) -> list[int]:
            ids = [sid for sid, s in judgments.pending_scores(store)
                   if (s >= threshold if action == "accept" else s <= threshold)]
            review.bulk(store, ids, action, reason=reason)
            return ids

        async with self._write_lock:
            try:
                changed = await asyncio.to_thread(apply, self.writer)
            except StoreError as e:
                self.notify(str(e), title="Not saved", severity="error", timeout=6)
                return
            except sqlite3.OperationalError as e:
                self.notify(f"The project database did not take the bulk action ({e}). Another tuitune process "
                            "may be writing to it: wait a moment and try again.", title="Not saved",
                            severity="error", timeout=8)
                return
        if not changed:
            self.notify("No pending sample matched the offer any more; nothing changed.", severity="warning")
            return
        self._session.append((BULK, ""))
        self._bulks.append(changed)
        self._forget(changed)
        word = "accepted" if action == "accept" else "rejected"
        self.notify(f"{word.capitalize()} {len(changed):,} samples as the judge's decision; u undoes all of them.")
        self._reload()

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
