"""Rounds view (/rounds): one row per synthesis round (what was generated, what review made of it, the judge's mean
score, the counts per teacher), and below it the highlighted round's top rejection reasons and the lessons it was
generated with. Escape or q goes back."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from tuitune.core.curation.round_stats import RoundStats, round_stats

COLUMNS = ("round", "status", "generated", "reviewed", "accepted", "edited", "rejected", "acceptance", "judge",
           "teachers")


def cells(r: RoundStats) -> tuple[Text, ...]:
    """A round's row as plain text cells (teacher names and statuses are shown as written, never as markup)."""
    teachers = ", ".join(f"{name}: {t.get('stored', 0)}" for name, t in r.teachers.items())
    values = (str(r.id), r.status, f"{r.generated}/{r.requested}", str(r.reviewed), str(r.accepted), str(r.edited),
              str(r.rejected), "-" if r.acceptance is None else f"{r.acceptance:.0%}",
              "-" if r.judge_mean is None else f"{r.judge_mean:.1f}", teachers or "-")
    return tuple(Text(v) for v in values)


def round_detail(r: RoundStats) -> Text:
    out = Text()
    out.append(f"Round {r.id}", "bold")
    out.append(f" · started {r.started_at}\n" if r.started_at else "\n", "dim")
    out.append("Top rejection reasons\n", "bold underline")
    if r.top_reasons:
        for reason, n in r.top_reasons:
            out.append(f"  {n:>3} × {reason}\n")
    else:
        out.append("  none yet\n", "dim")
    out.append("Lessons it was generated with\n", "bold underline")
    if r.lessons:
        for lesson in r.lessons:
            out.append(f"  • {lesson}\n")
    else:
        out.append("  none (the first round, or nothing rejected or edited before it)\n", "dim")
    return out


class RoundsScreen(Screen[None]):
    CSS_PATH = "../review.tcss"
    BINDINGS: ClassVar[list[Binding]] = [Binding("escape,q", "back", "Back")]

    def __init__(self, store, name: str | None = None) -> None:
        super().__init__(name=name)
        self.store = store
        self.stats: list[RoundStats] = []

    def compose(self) -> ComposeResult:
        yield Static(Text(" Rounds ", "bold reverse"), id="rounds-bar")
        yield DataTable(id="rounds-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="rounds-detail")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.stats = round_stats(self.store)
        table = self.query_one(DataTable)
        table.add_columns(*COLUMNS)
        for r in self.stats:
            table.add_row(*cells(r), key=str(r.id))
        if not self.stats:
            self.query_one("#rounds-detail", Static).update(
                Text("No synthesis rounds yet: /gen 20 runs the first one.", "italic"))
        else:
            self._detail(self.stats[0])
        table.focus()

    @on(DataTable.RowHighlighted, "#rounds-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        r = next((s for s in self.stats if str(s.id) == event.row_key.value), None)
        if r is not None:
            self._detail(r)

    def _detail(self, r: RoundStats) -> None:
        self.query_one("#rounds-detail", Static).update(round_detail(r))

    def action_back(self) -> None:
        self.dismiss(None)
