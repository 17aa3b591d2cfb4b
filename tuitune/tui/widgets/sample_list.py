"""A virtualised list of samples (Textual Line API): it holds only the ids that match the filter and fetches
the rows it shows, one small page at a time, from SQLite. Opening and scrolling 100,000 samples costs the
same as 100."""

from __future__ import annotations

import sqlite3
from bisect import bisect_left
from collections import OrderedDict
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.events import Click
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tuitune.core.data import browse

PAGE = 64  # rows fetched per query
PAGES_KEPT = 32  # page cache size (LRU)
GLYPHS = {"pending": "·", "accepted": "✓", "rejected": "✗", "edited": "✎"}
ORIGINS = {"seed": "seed", "synth": "synth", "import": "imp", "chat": "chat"}  # shown when a row has no round


def stars(rating: int | None) -> str:
    return "·····" if not rating else "★" * rating + "☆" * (5 - rating)


class SampleList(ScrollView, can_focus=True):
    """One line per sample: status, rating, round, id and the first words of the instruction."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "sample-list--cursor", "sample-list--meta", "sample-list--empty",
        "sample-list--pending", "sample-list--accepted", "sample-list--rejected", "sample-list--edited",
    }
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("down,j", "cursor_down", "Down", show=False),
        Binding("up,k", "cursor_up", "Up", show=False),
        Binding("pagedown,ctrl+d", "page_down", "Page down", show=False),
        Binding("pageup,ctrl+u", "page_up", "Page up", show=False),
        Binding("home,g", "first", "First", show=False),
        Binding("end,G", "last", "Last", show=False),
    ]

    cursor: reactive[int] = reactive(0, always_update=True, repaint=False)

    class Highlighted(Message):
        """The cursor is on another sample (or on none: sample_id None)."""

        def __init__(self, sample_list: SampleList, sample_id: int | None, index: int) -> None:
            super().__init__()
            self.sample_list = sample_list
            self.sample_id = sample_id
            self.index = index

        @property
        def control(self) -> SampleList:
            return self.sample_list

    def __init__(self, conn: sqlite3.Connection, *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.conn = conn
        self.ids: list[int] = []
        self.loaded = False
        self.empty_message = "Loading…"
        self._pages: OrderedDict[int, dict[int, browse.Row]] = OrderedDict()
        self._styles: dict[str, Style] = {}
        self._id_width = 1
        self._last_posted: int | None = -1

    # ---- data ---------------------------------------------------------------------------------------
    def set_ids(self, ids: list[int], *, keep_id: int | None = None, empty_message: str = "",
                final: bool = True) -> None:
        """Show these ids (ascending). The cursor stays on keep_id, or on the nearest row after it.
        final=False: only the first rows so far (the rest is loading); the list is usable meanwhile."""
        self.ids = ids
        self.loaded = final
        self.empty_message = empty_message
        self._pages.clear()
        self._id_width = len(str(ids[-1])) if ids else 1
        self.virtual_size = Size(0, len(ids))
        index = 0
        if keep_id is not None and ids:
            index = min(bisect_left(ids, keep_id), len(ids) - 1)
        self._last_posted = -1
        self.cursor = index
        self.refresh()

    def index_of(self, sample_id: int) -> int | None:
        i = bisect_left(self.ids, sample_id)
        return i if i < len(self.ids) and self.ids[i] == sample_id else None

    def invalidate(self, sample_id: int) -> None:
        """Forget the cached row of this sample (it changed) and repaint its line."""
        i = self.index_of(sample_id)
        if i is None:
            return
        self._pages.pop(i // PAGE, None)
        self.refresh_line(i)

    @property
    def current_id(self) -> int | None:
        return self.ids[self.cursor] if self.ids and 0 <= self.cursor < len(self.ids) else None

    def row(self, index: int) -> browse.Row | None:
        page = index // PAGE
        rows = self._pages.get(page)
        if rows is None:
            rows = browse.rows(self.conn, self.ids[page * PAGE:(page + 1) * PAGE])
            self._pages[page] = rows
            if len(self._pages) > PAGES_KEPT:
                self._pages.popitem(last=False)
        else:
            self._pages.move_to_end(page)
        return rows.get(self.ids[index])

    # ---- cursor -------------------------------------------------------------------------------------
    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, len(self.ids) - 1))

    def watch_cursor(self, old: int, new: int) -> None:
        height = max(1, self.scrollable_content_region.height)
        top = round(self.scroll_y)
        if new < top:
            self.scroll_to(y=new, animate=False, immediate=True)
        elif new >= top + height:
            self.scroll_to(y=new - height + 1, animate=False, immediate=True)
        self.refresh_line(old)
        self.refresh_line(new)
        sample_id = self.current_id
        if sample_id != self._last_posted:
            self._last_posted = sample_id
            self.post_message(self.Highlighted(self, sample_id, new))

    def action_cursor_down(self) -> None:
        self.cursor += 1

    def action_cursor_up(self) -> None:
        self.cursor -= 1

    def action_page_down(self) -> None:
        self.cursor += max(1, self.scrollable_content_region.height - 1)

    def action_page_up(self) -> None:
        self.cursor -= max(1, self.scrollable_content_region.height - 1)

    def action_first(self) -> None:
        self.cursor = 0

    def action_last(self) -> None:
        self.cursor = len(self.ids) - 1

    def next(self) -> None:
        """Move to the next sample (after a review action); stays on the last one."""
        self.cursor += 1

    def on_click(self, event: Click) -> None:
        index = round(self.scroll_y) + event.y
        if 0 <= index < len(self.ids):
            self.cursor = index

    # ---- rendering ----------------------------------------------------------------------------------
    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()

    def _style(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            style = self._styles[name] = self.get_component_rich_style(f"sample-list--{name}", partial=True)
        return style

    def render_lines(self, crop):
        self._base = self.rich_style  # computed once per paint, not once per line
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = getattr(self, "_base", None) or self.rich_style
        index = round(self.scroll_y) + y
        if not self.ids:
            if y == 0:
                text = f" {self.empty_message if self.loaded else 'Loading…'}"
                return Strip([Segment(text, base + self._style("empty"))]).adjust_cell_length(width, base)
            return Strip.blank(width, base)
        if index >= len(self.ids):
            return Strip.blank(width, base)
        row = self.row(index)
        line = base + self._style("cursor") if index == self.cursor else base
        meta = line + self._style("meta")
        if row is None:  # deleted since the list was loaded
            segments = [Segment(f" #{self.ids[index]} (deleted)", meta)]
        else:
            where = f"R{row.round_id}" if row.round_id is not None else ORIGINS.get(row.origin, row.origin)
            segments = [
                Segment(f" {GLYPHS.get(row.status, '?')} ", line + self._style(row.status)),
                Segment(f"{stars(row.rating)} {where:<5} #{row.id:<{self._id_width}} ", meta),
                Segment(row.preview, line),
            ]
        return Strip(segments).adjust_cell_length(width, line)
