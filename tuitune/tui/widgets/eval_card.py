"""A transcript card that evaluates a run (base vs few-shot vs tuned on the held-out split) in a worker and
shows the table and the verdict."""

from __future__ import annotations

import asyncio

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Markdown, Static


class EvalCard(Vertical):
    DEFAULT_CLASSES = "card"

    class Progress(Message):
        def __init__(self, text: str, report_md: str | None = None, error: bool = False):
            super().__init__()
            self.text, self.report_md, self.error = text, report_md, error

    def __init__(self, run_id: str, **kw):
        super().__init__(**kw)
        self.run_id = run_id

    def compose(self) -> ComposeResult:
        yield Static(f"Evaluation of run [b]{self.run_id}[/b]", classes="card-title")
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
        body = report.to_markdown().split("\n", 2)[2]  # without the H1 title: the card has one
        self.post_message(self.Progress(f"saved to {md_path}", report_md=body))

    @on(Progress)
    def show(self, event: Progress) -> None:
        status = self.query_one("#eval-status", Static)
        status.update(f"[red]{event.text}[/red]" if event.error else event.text)
        if event.report_md:
            self.query_one("#eval-report", Markdown).update(event.report_md)
