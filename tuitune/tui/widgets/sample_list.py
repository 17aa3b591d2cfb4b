"""A virtualised list of samples (Textual Line API): it holds only the ids that match the filter and fetches
the rows it shows, one small page at a time, from SQLite. Opening and scrolling 100,000 samples costs the
same as 100."""

from __future__ import annotations

import sqlite3
from bisect import bisect_left
from collections import OrderedDict
from math import ceil
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.events import Click
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.scrollbar import ScrollBar
from textual.strip import Strip

from tuitune.core.data import browse

PAGE = 64  # rows fetched per query
PAGES_KEPT = 32  # page cache size (LRU)
LINES_KEPT = 400  # painted rows kept (about four screens)
GLYPHS = {"pending": "·", "accepted": "✓", "rejected": "✗", "edited": "✎"}
ORIGINS = {"seed": "seed", "synth": "synth", "import": "imp", "chat": "chat"}  # shown when a row has no round


def stars(rating: int | None) -> str:
    return "·····" if not rating else "★" * rating + "☆" * (5 - rating)


def score_cell(score: int | None) -> str:
    return "·" if score is None else str(score)


class SampleList(ScrollView, can_focus=True):
    """One line per sample: status, rating, the judge's score, round, id and the first words of the instruction.
    Rows are in the order of their sort keys (browse.key_of: the id itself in id order), kept ascending, so a
    row's place is found by bisection."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "sample-list--cursor", "sample-list--meta", "sample-list--empty",
        "sample-list--pending", "sample-list--accepted", "sample-list--rejected", "sample-list--edited",
        "sample-list--low", "sample-list--high",
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
        self._keys: list[int] | None = None  # sort keys parallel to ids; None: the ids are the keys
        self.loaded = False
        self.empty_message = "Loading…"
        self._pages: OrderedDict[int, dict[int, browse.Row]] = OrderedDict()
        self._styles: dict[str, Style] = {}
        self._lines: OrderedDict[tuple[int, bool], Strip] = OrderedDict()  # painted rows, for scrolling
        self._line_width = -1
        self._id_width = 1
        self._last_posted: int | None = -1

    # ---- data ---------------------------------------------------------------------------------------
    def set_ids(self, ids: list[int], *, keep_id: int | None = None, empty_message: str = "",
                final: bool = True, keys: list[int] | None = None, keep_key: int | None = None) -> None:
        """Show these ids (ascending, or in the order of `keys`, ascending, one per id). The cursor stays on
        keep_id (whose key is keep_key when keys are given), or on the nearest row after it.
        final=False: only the first rows so far (the rest is loading); the list is usable meanwhile."""
        self.ids = ids
        self._keys = keys
        self.loaded = final
        self.empty_message = empty_message
        self._pages.clear()
        self._lines.clear()
        self._id_width = self._widest_id()
        self.virtual_size = Size(0, len(ids))
        index = 0
        if keep_id is not None and ids:
            wanted = keep_id if keys is None else keep_key
            if keys is not None and wanted is None:
                index = ids.index(keep_id) if keep_id in ids else 0
            else:
                index = min(bisect_left(self._order, wanted), len(ids) - 1)
        self._last_posted = -1
        self.cursor = index
        self.refresh()

    @property
    def _order(self) -> list[int]:
        return self.ids if self._keys is None else self._keys

    @property
    def sorted_by_key(self) -> bool:
        return self._keys is not None

    def _widest_id(self) -> int:
        if not self.ids:
            return 1
        return len(str(self.ids[-1] if self._keys is None else max(self.ids)))

    def index_of(self, sample_id: int, key: int | None = None) -> int | None:
        """The row of a sample (None if not listed). In key order, `key` finds it by bisection; without it,
        a linear search."""
        if self._keys is not None and key is None:
            try:
                return self.ids.index(sample_id)
            except ValueError:
                return None
        i = bisect_left(self._order, sample_id if self._keys is None else key)
        return i if i < len(self.ids) and self.ids[i] == sample_id else None

    def remove(self, sample_id: int) -> None:
        """Take a sample out of the list (it left the filter). The cursor stays on the sample it is on; if that
        was the one removed, on the one that takes its place. The rows on screen do not jump."""
        i = self.index_of(sample_id)
        if i is None:
            return
        del self.ids[i]
        if self._keys is not None:
            del self._keys[i]
        top, cursor = round(self.scroll_y), self.cursor
        self._reshaped()
        if i < top:
            self.scroll_to(y=top - 1, animate=False, immediate=True)
        self.cursor = cursor - 1 if i < cursor else cursor

    def insert(self, sample_id: int, key: int | None = None) -> int:
        """Put a sample (back) into the list, in order (by `key` when the list is in key order); the cursor
        stays on its sample. Returns its index."""
        if self._keys is not None and key is None:
            raise ValueError("a list in key order needs the sample's key to insert it")
        k = sample_id if self._keys is None else key
        i = bisect_left(self._order, k)
        if i < len(self.ids) and self.ids[i] == sample_id:
            return i
        was_empty = not self.ids
        self.ids.insert(i, sample_id)
        if self._keys is not None:
            self._keys.insert(i, k)
        cursor = self.cursor
        self._reshaped()
        self.cursor = cursor + 1 if i <= cursor and not was_empty else cursor
        return i

    def _reshaped(self) -> None:
        self._pages.clear()  # pages and painted rows are by index, which moved
        self._lines.clear()
        self._id_width = self._widest_id()
        self.virtual_size = Size(0, len(self.ids))
        self.refresh()

    def invalidate(self, sample_id: int) -> None:
        """Forget the cached row of this sample (it changed) and repaint its line."""
        i = self.index_of(sample_id)
        if i is None:
            return
        self._pages.pop(i // PAGE, None)
        self._lines.pop((i, False), None)
        self._lines.pop((i, True), None)
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
    def watch_scroll_y(self, old: float, new: float) -> None:
        # As ScrollView's own watcher, except that the scroll bar is repainted only when its thumb moves: it
        # repaints every row through Rich, and with thousands of samples the thumb moves once in many lines.
        if self.show_vertical_scrollbar:
            bar = self.vertical_scrollbar
            before = thumb_picture(bar)
            bar.set_reactive(ScrollBar.position, bar.validate_position(new))
            if thumb_picture(bar) != before:
                bar.refresh()
        if round(old) != round(new):
            self.refresh(self.size.region)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()
        self._lines.clear()

    def _style(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            style = self._styles[name] = self.get_component_rich_style(f"sample-list--{name}", partial=True)
        return style

    def render_lines(self, crop):
        # computed once per paint, not once per line
        self._base = self.rich_style
        self._top = round(self.scroll_y)
        width = self.scrollable_content_region.width
        if width != self._line_width:
            self._line_width = width
            self._lines.clear()
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        width = self._line_width
        base = self._base
        index = self._top + y
        if not self.ids:
            if y == 0:
                text = f" {self.empty_message if self.loaded else 'Loading…'}"
                return Strip([Segment(text, base + self._style("empty"))]).adjust_cell_length(width, base)
            return Strip.blank(width, base)
        if index >= len(self.ids):
            return Strip.blank(width, base)
        key = (index, index == self.cursor)
        strip = self._lines.get(key)
        if strip is None:
            strip = self._lines[key] = self._render_row(index, key[1], width, base)
            if len(self._lines) > LINES_KEPT:
                self._lines.popitem(last=False)
        return strip

    def _render_row(self, index: int, is_cursor: bool, width: int, base: Style) -> Strip:
        row = self.row(index)
        line = base + self._style("cursor") if is_cursor else base
        meta = line + self._style("meta")
        if row is None:  # deleted since the list was loaded
            segments = [Segment(f" #{self.ids[index]} (deleted)", meta)]
        else:
            where = f"R{row.round_id}" if row.round_id is not None else ORIGINS.get(row.origin, row.origin)
            score = line + self._style("low" if row.score is not None and row.score <= 2 else
                                       "high" if row.score is not None and row.score >= 4 else "meta")
            segments = [
                Segment(f" {GLYPHS.get(row.status, '?')} ", line + self._style(row.status)),
                Segment(f"{stars(row.rating)} ", meta),
                Segment(score_cell(row.score), score),
                Segment(f" {where:<5} #{row.id:<{self._id_width}} ", meta),
                Segment(row.preview, line),
            ]
        return Strip(segments).adjust_cell_length(width, line)


def thumb_picture(bar: ScrollBar) -> list:
    """What a vertical scroll bar paints (without its colours), to tell whether it has to be painted again."""
    window = bar.window_size if bar.window_size < bar.window_virtual_size else 0
    segments = bar.renderer.render_bar(size=bar.size.height, virtual_size=ceil(bar.window_virtual_size),
                                       window_size=ceil(window), position=bar.position, vertical=True)
    return [(s.text, s.style) for s in segments.segments]
