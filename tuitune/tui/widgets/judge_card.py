"""A transcript card that scores the unscored samples (of one round) with the judge in a worker, with progress,
and ends with "judged N/M; scores 1:a 2:b ...". Every verdict is committed as it arrives (a stopped run keeps them).
The judge is the default teacher from /settings, started through the app's EnginePool (the embedded one if none)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Static


@dataclass
class JudgeProgress(Message):
    text: str

    def can_replace(self, message: Message) -> bool:  # a newer count replaces a queued one
        return isinstance(message, JudgeProgress)


class JudgeCard(Vertical):
    DEFAULT_CLASSES = "card"

    @dataclass
    class Finished(Message):
        judged: int
        total: int
        summary: str

    def __init__(self, round_id: int | None = None, **kw):
        super().__init__(**kw)
        self.round_id = round_id
        self.summary = ""

    def compose(self) -> ComposeResult:
        what = f"round {self.round_id}" if self.round_id is not None else "the unscored samples"
        yield Static(f"Judge: {what}", classes="card-title", markup=False)
        yield Static("looking for samples without a score…", id="judge-status", markup=False)

    def on_mount(self) -> None:
        self.run_judge()

    @work(thread=True, exclusive=True, group="judge")
    def run_judge(self) -> None:
        from tuitune.core.curation import judge as jd
        from tuitune.core.curation import judgments
        from tuitune.core.data.store import Store
        from tuitune.core.serving.vllm import ServingError
        from tuitune.core.synth.teacher import Teacher, TeacherError

        settings = self.app.settings
        store = Store.open(settings.project)
        try:
            ids = judgments.to_judge(store, round_id=self.round_id)
            if not ids:  # nothing to do: no teacher is started
                self.post_message(self.Finished(0, 0, "nothing to judge: every sample has a score"))
                return
            try:
                cfg = self.app.engines.teacher_config(None)
            except (TeacherError, ServingError) as e:
                self.post_message(self.Finished(0, len(ids), f"the judge could not start: {e}"))
                return
            self.post_message(JudgeProgress(f"scoring {len(ids)} samples with {cfg.name} ({cfg.model})…"))

            def progress(r) -> None:
                self.post_message(JudgeProgress(f"{r.judged}/{r.total} scored, {r.failed + r.unparseable} not"))

            async def go():
                teacher = Teacher(cfg)
                try:
                    return await jd.judge_samples(store, teacher, ids, project=settings.project,
                                                  on_progress=progress)
                finally:
                    await teacher.close()

            try:
                res = asyncio.run(go())
            except (jd.JudgeError, TeacherError, ServingError) as e:
                self.post_message(self.Finished(0, len(ids), f"the judge stopped: {e}"))
                return
        finally:
            store.close()
        dist = " ".join(f"{s}:{res.scores.get(s, 0)}" for s in range(1, 6))
        text = f"judged {res.judged}/{res.total}; scores {dist}"
        if res.message:
            text += f" — {res.message}"
        self.post_message(self.Finished(res.judged, res.total, text))

    @on(JudgeProgress)
    def _progress(self, event: JudgeProgress) -> None:
        event.stop()
        self.query_one("#judge-status", Static).update(event.text)

    @on(Finished)
    def _finished(self, event: Finished) -> None:
        self.summary = event.summary
        self.query_one("#judge-status", Static).update(event.summary)
