"""A transcript card that evaluates a run (base vs few-shot vs tuned on the held-out split) in a worker and
shows the table and the verdict."""

from __future__ import annotations

import asyncio

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.markup import escape
from textual.message import Message
from textual.widgets import Markdown, Static

from tuitune.tui.text import md_line

SHOWN_EXAMPLES = 5


class EvalCard(Vertical):
    DEFAULT_CLASSES = "card"

    class Finished(Message):
        """The evaluation ended (its report is saved, or it failed): the screen may offer its answers."""

    class Progress(Message):
        def __init__(self, text: str, report_md: str | None = None, error: bool = False):
            super().__init__()
            self.text, self.report_md, self.error = text, report_md, error

    def __init__(self, run_id: str, **kw):
        super().__init__(**kw)
        self.run_id = run_id

    def compose(self) -> ComposeResult:
        yield Static(f"Evaluation of run [b]{escape(self.run_id)}[/b]", classes="card-title")
        yield Static("starting the models…", id="eval-status")
        yield Markdown("", id="eval-report")

    def on_mount(self) -> None:
        self.run_eval()

    @work(thread=True, exclusive=True, group="eval")
    def run_eval(self) -> None:
        from tuitune.core.evaluation.evaluate import (
            EvalError,
            evaluate,
            held_out_items,
            run_split,
            save_report,
            three_way,
        )
        from tuitune.core.models import ModelError
        from tuitune.core.serving.chat import ChatError
        from tuitune.core.serving.pool import chat_targets
        from tuitune.core.serving.vllm import ServingError

        run_dir = self.app.settings.project / "runs" / self.run_id
        try:
            items = held_out_items(run_dir)
            tuned, base = chat_targets(self.app.engines, self.run_id, with_base=True)
            train, _, cfg = run_split(run_dir)
            contenders, sample = three_way(train, items, base, tuned, seed=cfg.seed)

            def progress(text: str) -> None:
                self.post_message(self.Progress(text))

            report = asyncio.run(evaluate(items, contenders, run_id=self.run_id, progress=progress,
                                          task=self.app.store.get_task().description, train_items=sample))
            _, md_path = save_report(report, run_dir)
        except (EvalError, ServingError, ModelError, ChatError) as e:
            self.post_message(self.Progress(str(e), error=True))
            return
        self.post_message(self.Progress(f"saved to {md_path}", report_md=card_markdown(report)))

    @on(Progress)
    def show(self, event: Progress) -> None:
        status = self.query_one("#eval-status", Static)
        status.update(f"[red]{escape(event.text)}[/red]" if event.error else escape(event.text))
        if event.report_md:
            self.query_one("#eval-report", Markdown).update(event.report_md)
        if event.report_md or event.error:
            self.post_message(self.Finished())


def card_markdown(report) -> str:
    """The report for the card: the metrics table and verdict as the report file has them (without its H1
    title: the card has one), then a few examples whose prompts and answers are shown as the models wrote them
    (escaped: a `<tag>` or `[x]` in an answer is text, not Markdown)."""
    from tuitune.core.evaluation.report import ROLE_TITLES

    head = report.to_markdown().split("\n", 2)[2].split("\n## Examples", 1)[0].rstrip()
    lines = [head, "", "## Examples", ""]
    for i, it in enumerate(report.items[:SHOWN_EXAMPLES]):
        lines += [f"**Prompt {i + 1}:** {md_line(it.prompt)}", "", f"- reference: {md_line(it.reference)}"]
        for r in report.results:
            role = f" ({ROLE_TITLES[r.role]})" if r.role else ""
            lines.append(f"- {md_line(r.model)}{role}: {md_line(r.outputs[i])}")
        lines.append("")
    return "\n".join(lines)
