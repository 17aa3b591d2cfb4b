"""The held-out verdict of a run, on its training card: base vs few-shot vs tuned as a small table, the verdict
in words, the general answers of base vs tuned (the forgetting check, with its warning), and `v` for a few
held-out items side by side (reference, base, few-shot, tuned). Styles: app.tcss."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

ROLES = (("base", "base"), ("few_shot", "few-shot"), ("tuned", "tuned"))
COLUMNS = (("chrF", "chrf"), ("ROUGE-L", "rougeL"), ("BLEU", "bleu"), ("exact", "exact"), ("contains", "contains"),
           ("judge", "judge"), ("chrF train", "train_chrf"))
SHOWN_ITEMS = 5


def _cell(v) -> str:
    return "-" if v is None else f"{v:.1f}" if isinstance(v, float) else str(v)


class VerdictView(Vertical):
    """Built from a `verdict` event; the held-out answers come from the report it names (in the run folder)."""

    BINDINGS: ClassVar[list[Binding]] = [Binding("v", "show_items", "held-out answers side by side")]
    can_focus = True

    def __init__(self, verdict: dict, run_dir: Path, **kw):
        super().__init__(**kw)
        self.verdict = verdict
        self.run_dir = Path(run_dir)

    def compose(self) -> ComposeResult:
        contenders = self.verdict.get("contenders") or {}
        table = DataTable(id="verdict-table", cursor_type="row", show_cursor=False)
        cols = [(title, key) for title, key in COLUMNS if any(c.get(key) is not None for c in contenders.values())]
        table.add_columns("", *(title for title, _ in cols))
        for role, title in ROLES:
            if role in contenders:
                table.add_row(title, *(_cell(contenders[role].get(key)) for _, key in cols), key=role)
        if contenders:
            yield table
        words = self.verdict.get("summary") or self.verdict.get("verdict") or ""
        yield Static(f"[b]verdict[/b]{escape(engine_words(self.verdict))}: {escape(str(words))}", id="verdict-words")
        general = self.verdict.get("general") or {}
        if general.get("text"):  # the forgetting check: base vs tuned on general questions
            warning = f"\n[b]warning[/b]: {escape(general['warning'])}" if general.get("warning") else ""
            yield Static(escape(general["text"]) + warning, id="verdict-general")
        if self.verdict.get("report"):
            yield Static("[dim]F6 (or v on this card): held-out answers side by side[/dim]", id="verdict-hint")

    def action_show_items(self) -> None:
        from tuitune.core.evaluation.report import load_report

        name = Path(str(self.verdict.get("verdict_report") or "report.json")).name  # the verdict's own answers
        report = load_report(self.run_dir, name) or load_report(self.run_dir)
        if not report:
            self.app.notify(f"no report in {self.run_dir / 'eval'}", severity="warning", markup=False)
            return
        self.app.push_screen(HeldOutItems(report))


def engine_words(verdict: dict) -> str:
    """' (transformers, fp32, answers up to 48 tokens)': what produced the verdict's answers, or ''."""
    tuned = (verdict.get("contenders") or {}).get("tuned") or {}
    parts = [p for p in (verdict.get("engine") or tuned.get("engine"), verdict.get("precision") or tuned.get("dtype"))
             if p]
    if verdict.get("max_new_tokens"):
        parts.append(f"answers up to {verdict['max_new_tokens']} tokens")
    return f" ({', '.join(parts)})" if parts else ""


class HeldOutItems(ModalScreen):
    """A few held-out items: the reference and each contender's answer."""

    BINDINGS: ClassVar[list[Binding]] = [Binding("escape,q,v", "dismiss", "close")]

    def __init__(self, report: dict):
        super().__init__()
        self.report = report

    def compose(self) -> ComposeResult:
        names = {role: c.get("model") for role, c in (self.report.get("contenders") or {}).items()}
        with VerticalScroll():
            yield Static(f"[b]{len(self.report.get('items', []))} held-out items[/b] (first {SHOWN_ITEMS}); "
                         f"{escape(str((self.report.get('verdict') or {}).get('text', '')))}")
            for i, item in enumerate(self.report.get("items", [])[:SHOWN_ITEMS], 1):
                yield Static(f"{i}. {escape(item['prompt'])}", classes="item-prompt")
                yield Static(f"  [green]reference[/green]: {escape(item['reference'])}", classes="item-answer")
                for role, title in ROLES:
                    out = item.get("outputs", {}).get(names.get(role) or "")
                    if out is not None:
                        yield Static(f"  [b]{title}[/b]: {escape(out)}", classes="item-answer")
