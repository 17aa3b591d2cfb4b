"""The sample judge: a teacher endpoint scores each sample 1-5 against the task, the system prompt and the current
lessons, with a one-line critique and the lesson it breaks, using the rubric in prompts/judge_sample.md.j2 (a project
replaces it with <project>/prompts/judge_sample.md.j2). JSON-schema output where the endpoint takes it.

Many requests are in flight; each verdict is committed as it arrives, so a killed or cancelled run keeps what it
scored and the next run scores only the rest (judgments.to_judge)."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tuitune.core.curation import judgments
from tuitune.core.data.samples import Sample
from tuitune.core.data.store import Store

TEMPLATE = "judge_sample.md.j2"
CRITIQUE_CHARS = 300
_SCORE = re.compile(r'"?score"?\s*[:=]\s*"?([1-5])')


class JudgeError(Exception):
    """A judge run that cannot start or go on (no samples, misconfigured endpoint), with what to do."""


def schema(n_lessons: int, *, constrained: bool = True) -> dict:
    lesson: dict = {"type": "integer"}
    if constrained:
        lesson.update(minimum=0, maximum=max(0, n_lessons))
    return {"type": "object", "properties": {
        "score": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
        "critique": {"type": "string", "maxLength": 200} if constrained else {"type": "string"},
        "lesson": lesson}, "required": ["score", "critique", "lesson"], "additionalProperties": False}


def rubric_version(project: Path | None = None) -> str:
    """The rubric in use: its file name and the hash of its text (a project's own file wins)."""
    from tuitune.core.synth.prompts import prompt_dirs

    for d in prompt_dirs(project):
        path = d / TEMPLATE
        if path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            return f"{'project' if d != prompt_dirs(None)[-1] else 'built-in'}:{TEMPLATE}@{digest}"
    raise JudgeError(f"the judge's rubric {TEMPLATE} is missing; reinstall tuitune or restore the file")


def messages(sample: Sample, *, task: str, system_prompt: str, lessons: list[str],
             project: Path | None = None) -> list[dict]:
    from tuitune.core.synth.prompts import render

    example = sample.to_alpaca()
    example.pop("system", None)
    text = render(TEMPLATE, project=project, task_description=task, system_prompt=sample.system or system_prompt,
                  lessons=lessons, example=example)
    return [{"role": "user", "content": text}]


def _schema_arg(teacher, n_lessons: int):
    """A pool picks the endpoint per request, so it gets the schema as a function of "constrained"."""
    if hasattr(teacher, "configs"):
        return lambda constrained: schema(n_lessons, constrained=constrained)
    return schema(n_lessons, constrained=teacher.config.supports_json_schema is True)


@dataclass
class Verdict:
    score: int
    critique: str
    lesson: str


def parse(text: str, lessons: list[str]) -> Verdict | None:
    """The verdict in a reply (lenient: prose or fences around the JSON, a number as text), None if no score."""
    from tuitune.core.synth.teacher import Unparseable, extract_json

    try:
        value, _ = extract_json(text)
    except Unparseable:
        value = None
    if not isinstance(value, dict):
        m = _SCORE.search(text)
        return Verdict(int(m.group(1)), "", "") if m else None
    try:
        score = int(float(str(value.get("score", "")).strip()))
    except ValueError:
        return None
    if not 1 <= score <= 5:
        return None
    critique = " ".join(str(value.get("critique") or value.get("reason") or "").split())[:CRITIQUE_CHARS]
    lesson = value.get("lesson")
    text_lesson = ""
    if isinstance(lesson, int | float) and not isinstance(lesson, bool) and 1 <= int(lesson) <= len(lessons):
        text_lesson = lessons[int(lesson) - 1]
    elif isinstance(lesson, str) and lesson.strip() not in ("", "0", "none", "None"):
        text_lesson = lesson.strip()[:CRITIQUE_CHARS]
    return Verdict(score, critique, text_lesson)


@dataclass
class JudgeResult:
    total: int = 0
    judged: int = 0
    failed: int = 0  # requests that failed after the client's retries (the samples stay unscored)
    unparseable: int = 0  # replies without a score
    cancelled: bool = False
    message: str = ""
    scores: dict[int, int] = field(default_factory=dict)  # score -> how many

    def to_dict(self) -> dict:
        return {"total": self.total, "judged": self.judged, "failed": self.failed, "unparseable": self.unparseable,
                "cancelled": self.cancelled, "message": self.message, "scores": self.scores}


async def judge_samples(store: Store, teacher, sample_ids: list[int], *, project: Path | None = None,
                        concurrency: int = 8, on_progress: Callable[[JudgeResult], None] | None = None,
                        max_tokens: int = 200) -> JudgeResult:
    """Score the samples with `teacher` (a Teacher or a TeacherPool); each verdict is committed as it arrives."""
    import openai

    from tuitune.core.data.review import lessons as current_lessons
    from tuitune.core.synth.teacher import BadResponse, TeacherError

    task = store.get_task()
    lessons = current_lessons(store)
    rubric = rubric_version(project)
    result = JudgeResult(total=len(sample_ids))
    sem = asyncio.Semaphore(max(1, concurrency))
    fatal: list[str] = []

    def judge_name(reply) -> str:
        cfgs = getattr(teacher, "configs", None) or [teacher.config]
        name = getattr(reply, "teacher", "") or cfgs[0].name
        model = next((c.model for c in cfgs if c.name == name), cfgs[0].model)
        return f"{name}/{model}"

    async def one(sid: int) -> None:
        if fatal:
            return
        sample = store.get_sample(sid)
        msgs = messages(sample, task=task.description, system_prompt=task.system_prompt, lessons=lessons,
                        project=project)
        try:
            async with sem:
                if fatal:
                    return
                reply = await teacher.complete(msgs, temperature=0.0, max_tokens=max_tokens,
                                               schema=_schema_arg(teacher, len(lessons)), schema_name="verdict")
        except (openai.APIError, BadResponse):
            result.failed += 1
        except TeacherError as e:
            fatal.append(str(e))
            result.failed += 1
        else:
            verdict = parse(reply.text, lessons)
            if verdict is None:
                result.unparseable += 1
            else:
                judgments.save(store, judgments.Judgment(sid, verdict.score, verdict.critique, verdict.lesson,
                                                         judge_name(reply), rubric))
                result.judged += 1
                result.scores[verdict.score] = result.scores.get(verdict.score, 0) + 1
        if on_progress:
            on_progress(result)

    try:
        await asyncio.gather(*(one(sid) for sid in sample_ids))
    except asyncio.CancelledError:
        result.cancelled = True
        result.message = f"cancelled with {result.judged} of {result.total} scored; run again to score the rest"
        raise
    if fatal:
        result.message = f"the judge stopped: {fatal[0]}"
    elif result.failed or result.unparseable:
        result.message = (f"{result.failed + result.unparseable} of {result.total} samples are not scored "
                          f"({result.failed} requests failed, {result.unparseable} replies had no score); run "
                          f"`tuitune judge` again to score them")
    return result
