"""Evaluation on the held-out split: generate with each contender, score, and (with all three) a verdict.

- The held-out split is the one the training run kept out (`holdout` records of runs/<id>/data.jsonl, drawn as
  the worker drew them; contenders.py), or any list of (messages, reference) items.
- Contenders: base, few-shot (the base model with k training examples as earlier turns) and tuned, greedy,
  scored with metrics.py (BLEU / chrF / ROUGE-L, exact-match / contains-reference for short answers), on the
  held-out items and on a sample of training records (memorisation); verdict.py turns the numbers into words.
- The judge (optional) is any OpenAI-compatible teacher endpoint (judge.py).
- The report is saved in the run folder: runs/<id>/eval/report.json and report.md (report.py).

A contender answers through a chat Backend (vLLM or the transformers chat engine: `stream`, one answer per
request, `concurrency` in flight) or a local.LocalModel (in-process, batched).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tuitune.core.evaluation.contenders import (
    TRAIN_SAMPLE,
    EvalItem,
    held_out_items,
    items_from_records,
    pick_shots,
    run_split,
    train_sample,
    with_shots,
)
from tuitune.core.evaluation.judge import judge, parse_judgement, render_judge
from tuitune.core.evaluation.metrics import EvalError, bleu_tokenizer, is_chinese, score
from tuitune.core.evaluation.report import EvalReport, ModelResult, load_report, save_report

if TYPE_CHECKING:
    from pathlib import Path

    from tuitune.core.serving.chat import Backend, GenParams


@dataclass
class Contender:
    """One model under a role: `model` answers (a chat Backend or a local.LocalModel); `shots` are prepended."""

    role: str  # base / few_shot / tuned, or "" for a plain model
    model: object
    name: str = ""
    shots: list[EvalItem] = field(default_factory=list)

    @property
    def label(self) -> str:
        base = self.name or self.model.name
        return f"{base} + {len(self.shots)}-shot" if self.role == "few_shot" or self.shots else base


async def generate(backend: Backend, items: Sequence[EvalItem], params: GenParams | None = None,
                   concurrency: int = 8) -> list[str]:
    """The backend's answer to every item (greedy by default), `concurrency` requests at a time."""
    return await _answers(backend, [it.messages for it in items], params, concurrency)


async def _answers(model, conversations: list[list[dict]], params: GenParams | None, concurrency: int = 8,
                   limits: Sequence[int] | None = None):
    """Every conversation's answer; `limits`: new tokens per answer (default params.max_tokens for each)."""
    import dataclasses

    from tuitune.core.serving.chat import GenParams

    params = params or GenParams(temperature=0.0, max_tokens=256, seed=0)
    if hasattr(model, "answer"):  # local.LocalModel: batched, greedy
        return await asyncio.to_thread(model.answer, conversations, params.max_tokens, limits=limits)
    sem = asyncio.Semaphore(concurrency)

    async def one(msgs: list[dict], limit: int | None) -> str:
        p = params if limit is None else dataclasses.replace(params, max_tokens=limit)
        async with sem:
            return "".join([d async for d in model.stream(msgs, p)])

    return list(await asyncio.gather(*(one(m, lim) for m, lim in
                                       zip(conversations, limits or [None] * len(conversations)))))


async def evaluate(items: Sequence[EvalItem], contenders: Sequence, *, run_id: str = "",
                   judge_backend: Backend | None = None, task: str = "", params: GenParams | None = None,
                   progress=None, project: Path | None = None, train_items: Sequence[EvalItem] = (),
                   answer_limit=None) -> EvalReport:
    """Generate with every contender (a Contender, or a bare Backend), one after the other, and score them; with
    train_items also score base and tuned on those; with base, few_shot and tuned, decide the verdict.
    answer_limit(item) -> new tokens for that item's answer (the same for every contender); default
    params.max_tokens for all."""
    from tuitune.core.evaluation.verdict import decide

    if not items:
        raise EvalError("no examples to evaluate")
    contenders = [c if isinstance(c, Contender) else Contender("", c) for c in contenders]
    refs = [it.reference for it in items]
    tokenizer = bleu_tokenizer(refs)
    shots = next((c.shots for c in contenders if c.shots), [])
    report = EvalReport(run_id=run_id, items=list(items), tokenizer=tokenizer, shots=list(shots),
                        train_items=list(train_items), created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    limits = [answer_limit(it) for it in items] if answer_limit else None  # the same for every contender
    report.max_tokens = max(limits) if limits else (params.max_tokens if params else 256)
    report.budget = (f"answers up to {report.max_tokens} tokens (each item's own budget)" if limits else
                     f"max_tokens {report.max_tokens}")
    train_limits = [answer_limit(it) for it in train_items] if answer_limit else None
    for c in contenders:
        if progress:
            progress(f"generating with {c.label}")
        t0 = time.monotonic()
        outputs = await _answers(c.model, [with_shots(it, c.shots) for it in items], params, limits=limits)
        res = ModelResult(c.label, c.model.engine, score(outputs, refs, tokenizer), outputs, time.monotonic() - t0,
                          role=c.role, dtype=engine_dtype(c.model))
        if train_items and c.role in ("base", "tuned"):
            res.train_outputs = await _answers(c.model, [it.messages for it in train_items], params,
                                               limits=train_limits)
            res.train_metrics = score(res.train_outputs, [it.reference for it in train_items], tokenizer)
        if judge_backend is not None:
            if progress:
                progress(f"judging {c.label} with {judge_backend.name}")
            res.judge = await judge(judge_backend, items, outputs, task, project=project)
        report.results.append(res)
    roles = report.by_role()
    if {"base", "few_shot", "tuned"} <= set(roles):
        train = ({r: roles[r].train_metrics["per_item"]["chrf"] for r in ("base", "tuned")}
                 if roles["tuned"].train_metrics and roles["base"].train_metrics else None)
        report.verdict = decide({r: roles[r].metrics["per_item"]["chrf"] for r in roles}, train).to_json()
    return report


def engine_dtype(model) -> str:
    """The precision a contender's engine computes in (bf16 / fp32 / fp16), or "" where it cannot be told (a
    remote server): local.LocalModel's own choice, a vLLM server of ours from its start-up log, the in-process
    transformers chat engine by its rule (fp32 on a CPU, bf16 on a GPU)."""
    if getattr(model, "bf16", None) is not None:  # local.LocalModel
        return "bf16" if model.bf16 else "fp32"
    server = getattr(model, "server", None)
    if server is not None and getattr(server, "log_path", None) is not None:
        from tuitune.core.evaluation.parity_engines import served_dtype
        from tuitune.core.serving.preflight import tail

        return served_dtype(tail(server.log_path, 400).rpartition("==== tuitune: starting")[2])
    if getattr(model, "engine", "") == "transformers":
        inner = getattr(model, "_model", None)
        if inner is not None:
            return {"torch.bfloat16": "bf16", "torch.float32": "fp32", "torch.float16": "fp16"}.get(
                str(inner.dtype), str(inner.dtype))
        device = getattr(model, "device", None)
        return "fp32" if device == "cpu" or (device is None and not _cuda()) else "bf16"
    return ""


def _cuda() -> bool:
    from tuitune.core.serving.preflight import has_gpu

    return has_gpu()


def answer_budget(items: Sequence[EvalItem], count_tokens, cap: int) -> int:
    """New tokens per answer: twice the longest reference plus 32, at most `cap` (a model that does not stop
    is cut there; its score shows it)."""
    return max((item_budget(it, count_tokens, cap) for it in items), default=max(16, min(cap, 160)))


def item_budget(item: EvalItem, count_tokens, cap: int) -> int:
    """New tokens for one item's answer: twice its reference plus 32, at least 16, at most `cap`. An answer
    longer than that is already wrong; not decoding it spares the minutes a looping answer costs on a CPU."""
    return max(16, min(cap, 2 * count_tokens([{"role": "assistant", "content": item.reference}]) + 32))


FEW_SHOT_CONTEXT = 2048  # tokens the few-shot prompt may use at most (a small model's quality and a CPU's
# prefill time both fall with long prompts; the model's own context is the other limit)


def approx_tokens(messages: list[dict]) -> int:
    """About 3 characters per token, plus a few per turn (when no tokenizer is at hand)."""
    return sum(len(m["content"]) for m in messages) // 3 + 8 * len(messages)


def three_way(train_records: Sequence[dict], items: Sequence[EvalItem], base, tuned, *, seed: int,
              count_tokens=None, context: int = FEW_SHOT_CONTEXT, answer_tokens: int = 256,
              ) -> tuple[list[Contender], list[EvalItem]]:
    """([base, few_shot, tuned] contenders, a sample of training items) for a run's records: the few-shot
    examples fitted to min(context, FEW_SHOT_CONTEXT) tokens (count_tokens(messages) -> tokens), drawn with
    `seed`; the training sample as large as the held-out set (at most TRAIN_SAMPLE)."""
    count = count_tokens or approx_tokens
    shots = pick_shots(train_records, items, seed=seed, count_tokens=count,
                       context=min(context, FEW_SHOT_CONTEXT), answer_budget=answer_tokens)
    contenders = [Contender("base", base, name=getattr(base, "name", "")),
                  Contender("few_shot", base, shots=shots), Contender("tuned", tuned, name=getattr(tuned, "name", ""))]
    return contenders, train_sample(train_records, shots, min(len(items), TRAIN_SAMPLE), seed)


__all__ = ["Contender", "EvalError", "EvalItem", "EvalReport", "ModelResult", "answer_budget", "bleu_tokenizer",
           "evaluate", "generate", "held_out_items", "is_chinese", "item_budget", "items_from_records", "judge",
           "load_report", "parse_judgement", "render_judge", "run_split", "save_report", "score", "three_way"]
