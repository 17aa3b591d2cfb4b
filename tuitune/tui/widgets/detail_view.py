"""A scrollable text view (Textual Line API) for the review screen's detail pane.

A Static inside a scroll container wraps its text three times per update (height, then paint) and makes the
whole screen lay itself out again; with a key held down that was most of the cost of a cursor move. This view
wraps the text once per content and width, keeps the lines, and repaints only itself; the screen is laid out
again only when its scroll bar appears or disappears."""

from __future__ import annotations

from textual.content import Content
from textual.events import Resize
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.visual import Visual
from textual.widget import Widget


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
        """Tell the scroll machinery how tall the text is, without laying out the screen again if it can."""
        if not self.is_mounted:
            return
        lines = self._lines()
        size = Size(self._width, len(lines))
        if size == self.virtual_size:
            return
        scroll_update = getattr(self, "_scroll_update", None)  # Textual's own (private) scroll bar update
        if scroll_update is None or not self.container_size:
            self.virtual_size = size  # public path: a layout of the screen
            return
        self.set_reactive(Widget.virtual_size, size)
        scroll_update(size)  # sets the scroll bar; a layout only if the bar appears or disappears

    def on_resize(self, event: Resize) -> None:
        self._measure()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips = None  # colours come from the theme and the widget's styles
        self.refresh()

    # ---- rendering ----------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        lines = self._lines()
        index = round(self.scroll_y) + y
        width = self.scrollable_content_region.width
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
