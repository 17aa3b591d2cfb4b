"""The optional LLM judge: any OpenAI-compatible teacher grades each answer 1-5 with the rubric in prompts/judge.md
(a project can override it with <project>/prompts/judge.md)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tuitune.core.evaluation.contenders import EvalItem
from tuitune.core.evaluation.metrics import EvalError

if TYPE_CHECKING:
    from tuitune.core.serving.chat import Backend

JUDGE_PROMPT = "judge.md"  # in prompts/
VERDICT_SCHEMA = {"type": "object", "properties": {"score": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
                                                  "reason": {"type": "string", "maxLength": 300}},
                  "required": ["score", "reason"], "additionalProperties": False}
_SCORE = re.compile(r'"?score"?\s*[:=]\s*"?([1-5])')


def teacher_judge(settings) -> Backend | None:
    """The settings' default teacher endpoint (TUITUNE_TEACHER_BASE_URL) as the judge, or None when none is set."""
    import os

    if not settings.teacher_base_url:
        return None
    from tuitune.core.serving.chat import OpenAIBackend
    from tuitune.core.serving.vllm import Endpoint

    key = os.environ.get(settings.teacher_api_key_env, "none")
    return OpenAIBackend(Endpoint(settings.teacher_base_url, key, settings.teacher_model or "default", "remote"))


def render_judge(item: EvalItem, answer: str, task: str = "", project: Path | None = None) -> str:
    from tuitune.core.synth.prompts import PromptError, render

    try:
        return render(JUDGE_PROMPT, project=project, task=task, prompt=item.prompt, reference=item.reference,
                      answer=answer)
    except PromptError as e:
        raise EvalError(str(e)) from None


def parse_judgement(text: str) -> tuple[int | None, str]:
    """(score 1-5 or None, reason) from the judge's reply (JSON, or a line 'score: N')."""
    try:
        data = json.loads(text[text.index("{"): text.rindex("}") + 1])
        s = int(data.get("score"))
        return (s if 1 <= s <= 5 else None), str(data.get("reason", ""))
    except (ValueError, TypeError, AttributeError):
        m = _SCORE.search(text)
        return (int(m.group(1)) if m else None), text.strip()[:300]


async def judge(judge_backend: Backend, items: Sequence[EvalItem], outputs: Sequence[str], task: str = "",
                concurrency: int = 4, project: Path | None = None) -> dict:
    """Score each answer 1-5 with the rubric; mean over the answers the judge scored."""
    from tuitune.core.serving.chat import ChatError, GenParams, OpenAIBackend

    params = GenParams(temperature=0.0, max_tokens=200, seed=0)
    if isinstance(judge_backend, OpenAIBackend):  # constrain the reply to the verdict's JSON where supported
        params.response_format = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": VERDICT_SCHEMA}}
    sem = asyncio.Semaphore(concurrency)

    async def one(item: EvalItem, out: str) -> tuple[int | None, str]:
        nonlocal params
        msgs = [{"role": "user", "content": render_judge(item, out, task, project)}]
        async with sem:
            try:
                return parse_judgement("".join([d async for d in judge_backend.stream(msgs, params)]))
            except ChatError:
                if params.response_format is None:
                    raise
                params = GenParams(temperature=0.0, max_tokens=200, seed=0)  # endpoint without JSON schemas
                return parse_judgement("".join([d async for d in judge_backend.stream(msgs, params)]))

    verdicts = await asyncio.gather(*(one(it, o) for it, o in zip(items, outputs)))
    scores = [s for s, _ in verdicts if s is not None]
    return {"judge": judge_backend.name, "mean": round(sum(scores) / len(scores), 2) if scores else None,
            "scored": len(scores), "unparseable": len(verdicts) - len(scores),
            "scores": [s for s, _ in verdicts], "reasons": [r for _, r in verdicts]}
