"""A scrollable text view (Textual Line API) for the review screen's detail pane.

A Static inside a scroll container wraps its text three times per update (height, then paint) and makes the
whole screen lay itself out again; with a key held down that was most of the cost of a cursor move. This view
wraps the text once per content and width, keeps the lines, and repaints only itself; the screen is laid out
again never (its scroll bar is always there)."""

from __future__ import annotations

from textual.content import Content
from textual.events import Resize
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.scrollbar import ScrollBar
from textual.strip import Strip
from textual.visual import Visual
from textual.widget import Widget

from tuitune.tui.widgets.sample_list import thumb_picture


class DetailView(ScrollView, can_focus=True):
    """Shows one Content; `update` replaces it and scrolls back to the top."""

    def __init__(self, content: Content | str = "", *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._content = Content(content) if isinstance(content, str) else content
        self._strips: list[Strip] | None = None  # the wrapped lines at self._width
        self._width = -1

    @property
    def content(self) -> Content:
        return self._content

    @property
    def text(self) -> str:
        """The plain text shown (for tests and copy)."""
        return self._content.plain

    def update(self, content: Content | str) -> None:
        """Show new content from the top. Only the lines that differ on screen are painted again: the blank
        rows below a short sample, or a header shared by two samples, are left as they are."""
        old = self._strips if self._width == self.scrollable_content_region.width else None
        self._content = Content(content) if isinstance(content, str) else content
        self._strips = None
        if self.scroll_offset.y or self.scroll_offset.x:
            self.scroll_to(0, 0, animate=False, immediate=True)  # repaints every line
            old = None
        self._measure()
        if old is None or not self.is_mounted:
            self.refresh()
            return
        new = self._lines()
        blank = None
        changed = [y for y in range(self.scrollable_content_region.height)
                   if (old[y] if y < len(old) else blank) != (new[y] if y < len(new) else blank)]
        for start, count in _runs(changed):
            self.refresh_lines(start, count)

    # ---- layout -------------------------------------------------------------------------------------
    def _lines(self) -> list[Strip]:
        width = self.scrollable_content_region.width
        if self._strips is None or width != self._width:
            self._width = width
            self._strips = (Visual.to_strips(self, self._content, width, None, self.visual_style, pad=True)
                            if width > 0 else [])
        return self._strips

    def _measure(self) -> None:
        """Tell the scroll machinery how tall the text is. Not with `virtual_size = ...`: that lays out the
        whole screen, and its scroll bar repaints every row through Rich; the bar is always shown (CSS), so
        only its thumb can change, and it is repainted only when it does."""
        if not self.is_mounted:
            return
        size = Size(self._width, len(self._lines()))
        if size == self.virtual_size:
            return
        if not self.container_size or not self.show_vertical_scrollbar:  # not laid out yet
            self.virtual_size = size
            return
        self.set_reactive(Widget.virtual_size, size)
        bar = self.vertical_scrollbar
        before = thumb_picture(bar)
        bar.set_reactive(ScrollBar.window_virtual_size, size.height)
        if thumb_picture(bar) != before:
            bar.refresh()

    def on_resize(self, event: Resize) -> None:
        self._measure()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips = None  # colours come from the theme and the widget's styles
        self.refresh()

    # ---- rendering ----------------------------------------------------------------------------------
    def render_lines(self, crop):
        self._paint = (self._lines(), round(self.scroll_y), self.scrollable_content_region.width)  # once a paint
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        lines, top, width = getattr(self, "_paint", None) or (self._lines(), round(self.scroll_y), self._width)
        index = top + y
        if index >= len(lines):
            return Strip.blank(width, self.rich_style)
        return lines[index]


def _runs(rows: list[int]) -> list[tuple[int, int]]:
    """Ascending row numbers as (first, count) runs of consecutive rows."""
    out: list[tuple[int, int]] = []
    for y in rows:
        if out and out[-1][0] + out[-1][1] == y:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((y, 1))
    return out
