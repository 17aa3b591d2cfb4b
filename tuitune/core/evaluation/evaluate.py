"""Evaluation on the held-out split: generate with served models, score BLEU / chrF / ROUGE-L, optional LLM judge.

- The held-out split is the one the training run kept out (`holdout` records of runs/<id>/data.jsonl, drawn with
  the run's seed, exactly as the worker drew them), or any list of (messages, reference) items.
- BLEU and chrF come from sacrebleu, with tokenizer `zh` when the references are Chinese and `13a` otherwise.
  ROUGE-L comes from rouge-score; its default tokenizer drops every non-ASCII character, so Chinese text is
  split with sacrebleu's `zh` tokenizer (one token per CJK character) before ROUGE.
- The judge (optional) is any OpenAI-compatible teacher endpoint; the rubric is prompts/judge.md.
- The report is saved in the run folder: runs/<id>/eval/report.json and report.md (a Markdown table).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tuitune.core import atomic

if TYPE_CHECKING:
    from tuitune.core.serving.chat import Backend, GenParams

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df]")
ZH_SHARE = 0.3  # share of CJK characters (among non-space characters) above which a text counts as Chinese
REPORT_DIR = "eval"
JUDGE_PROMPT = "judge.md"  # in prompts/ (a project can override it with <project>/prompts/judge.md)


class EvalError(Exception):
    """An evaluation that cannot run, with what to do about it."""


@dataclass
class EvalItem:
    messages: list[dict]  # the conversation up to (not including) the answer to score
    reference: str

    @property
    def prompt(self) -> str:
        return self.messages[-1]["content"] if self.messages else ""


@dataclass
class ModelResult:
    model: str
    engine: str
    metrics: dict
    outputs: list[str]
    seconds: float
    judge: dict | None = None


@dataclass
class EvalReport:
    run_id: str
    items: list[EvalItem]
    results: list[ModelResult] = field(default_factory=list)
    tokenizer: str = "13a"
    created_at: str = ""

    def to_json(self) -> dict:
        return {
            "run_id": self.run_id, "created_at": self.created_at, "tokenizer": self.tokenizer, "n": len(self.items),
            "models": {r.model: {"engine": r.engine, "metrics": r.metrics, "seconds": round(r.seconds, 2),
                                 "judge": r.judge} for r in self.results},
            "items": [{"prompt": it.prompt, "reference": it.reference,
                       "outputs": {r.model: r.outputs[i] for r in self.results}} for i, it in enumerate(self.items)],
        }

    def to_markdown(self) -> str:
        judged = any(r.judge for r in self.results)
        head = ["model", "engine", "BLEU", "chrF", "ROUGE-L"] + (["judge (1-5)"] if judged else []) + ["seconds"]
        lines = [f"# Evaluation of run {self.run_id}", "",
                 f"{len(self.items)} held-out examples; sacrebleu tokenizer `{self.tokenizer}`.", "",
                 "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.results:
            m = r.metrics
            row = [r.model, r.engine, f"{m['bleu']:.2f}", f"{m['chrf']:.2f}", f"{m['rougeL']:.2f}"]
            if judged:
                row.append(f"{r.judge['mean']:.2f}" if r.judge and r.judge.get("mean") is not None else "-")
            lines.append("| " + " | ".join(row + [f"{r.seconds:.1f}"]) + " |")
        lines += ["", "## Examples", ""]
        for i, it in enumerate(self.items[:5]):
            lines += [f"**Prompt {i + 1}:** {_one_line(it.prompt)}", "", f"- reference: {_one_line(it.reference)}"]
            lines += [f"- {r.model}: {_one_line(r.outputs[i])}" for r in self.results]
            lines.append("")
        return "\n".join(lines)


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[:limit] + "…"


# ---- language and metrics --------------------------------------------------------------------------

def is_chinese(texts: Sequence[str]) -> bool:
    chars = "".join("".join(t.split()) for t in texts)
    return bool(chars) and len(CJK.findall(chars)) / len(chars) >= ZH_SHARE


def bleu_tokenizer(references: Sequence[str]) -> str:
    """sacrebleu tokenizer for these references: `zh` for Chinese targets, `13a` otherwise."""
    return "zh" if is_chinese(references) else "13a"


class _ZhRougeTokenizer:
    """rouge-score tokenizer that keeps CJK characters (one token each) and lower-cased words."""

    def __init__(self):
        from sacrebleu.tokenizers.tokenizer_zh import TokenizerZh

        self._zh = TokenizerZh()

    def tokenize(self, text: str) -> list[str]:
        return self._zh(text.lower()).split()


def score(hypotheses: Sequence[str], references: Sequence[str], tokenize: str | None = None) -> dict:
    """Corpus BLEU and chrF (sacrebleu) and mean ROUGE-L F1 (rouge-score), all on a 0-100 scale."""
    import sacrebleu
    from rouge_score import rouge_scorer

    if len(hypotheses) != len(references):
        raise EvalError(f"{len(hypotheses)} outputs for {len(references)} references")
    if not references:
        raise EvalError("no held-out examples to score")
    tokenize = tokenize or bleu_tokenizer(references)
    hyps, refs = list(hypotheses), list(references)
    bleu_metric, chrf_metric = sacrebleu.BLEU(tokenize=tokenize), sacrebleu.CHRF()
    bleu, chrf = bleu_metric.corpus_score(hyps, [refs]), chrf_metric.corpus_score(hyps, [refs])
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=tokenize != "zh",
                                      tokenizer=_ZhRougeTokenizer() if tokenize == "zh" else None)
    rouge = sum(scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs)) / len(refs)
    return {"bleu": round(bleu.score, 2), "chrf": round(chrf.score, 2), "rougeL": round(100 * rouge, 2),
            "tokenizer": tokenize, "n": len(refs), "bleu_signature": str(bleu_metric.get_signature()),
            "chrf_signature": str(chrf_metric.get_signature())}


# ---- the held-out split ------------------------------------------------------------------------------

def items_from_records(records: Sequence[dict]) -> list[EvalItem]:
    """SFT records ({"messages": [...]}) -> items: everything before the last assistant turn, and that turn."""
    items = []
    for r in records:
        msgs = r.get("messages")
        if not msgs or msgs[-1].get("role") != "assistant":
            continue
        items.append(EvalItem([{"role": m["role"], "content": m["content"]} for m in msgs[:-1]], msgs[-1]["content"]))
    return items


def held_out_items(run_dir: Path) -> list[EvalItem]:
    """The records the training run held out (same file, size and seed as the worker used)."""
    from tuitune.core.training.config import ConfigError, TrainConfig
    from tuitune.core.training.data import DataError, read_records, split_holdout

    run_dir = Path(run_dir)
    try:
        cfg = TrainConfig.load(run_dir / "config.yaml")
        records = read_records(cfg.data or run_dir / "data.jsonl")
    except (ConfigError, DataError) as e:
        raise EvalError(f"cannot read run {run_dir.name}'s data: {e}") from None
    _, held = split_holdout(records, cfg.holdout or 0, cfg.seed)
    items = items_from_records(held)
    if not items:
        raise EvalError(f"run {run_dir.name} has no held-out chat examples (holdout={cfg.holdout}); train with "
                        f"`holdout: 3` or more in the config, or evaluate on a file with --data FILE")
    return items


# ---- generation and judging ------------------------------------------------------------------------

async def generate(backend: Backend, items: Sequence[EvalItem], params: GenParams | None = None,
                   concurrency: int = 8) -> list[str]:
    """The backend's answer to every item (greedy by default), `concurrency` requests at a time."""
    from tuitune.core.serving.chat import GenParams

    params = params or GenParams(temperature=0.0, max_tokens=256, seed=0)
    sem = asyncio.Semaphore(concurrency)

    async def one(item: EvalItem) -> str:
        async with sem:
            return "".join([d async for d in backend.stream(item.messages, params)])

    return list(await asyncio.gather(*(one(it) for it in items)))


def render_judge(item: EvalItem, answer: str, task: str = "", project: Path | None = None) -> str:
    from tuitune.core.synth.prompts import PromptError, render

    try:
        return render(JUDGE_PROMPT, project=project, task=task, prompt=item.prompt, reference=item.reference,
                      answer=answer)
    except PromptError as e:
        raise EvalError(str(e)) from None


VERDICT_SCHEMA = {"type": "object", "properties": {"score": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
                                                  "reason": {"type": "string", "maxLength": 300}},
                  "required": ["score", "reason"], "additionalProperties": False}
_SCORE = re.compile(r'"?score"?\s*[:=]\s*"?([1-5])')


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
    """Score each answer 1-5 with the rubric in prompts/judge.md; mean over the answers the judge scored."""
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


async def evaluate(items: Sequence[EvalItem], backends: Sequence[Backend], *, run_id: str = "",
                   judge_backend: Backend | None = None, task: str = "", params: GenParams | None = None,
                   progress=None, project: Path | None = None) -> EvalReport:
    """Generate with every backend (one after the other, items in parallel) and score them."""
    if not items:
        raise EvalError("no examples to evaluate")
    refs = [it.reference for it in items]
    report = EvalReport(run_id=run_id, items=list(items), tokenizer=bleu_tokenizer(refs),
                        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    for b in backends:
        if progress:
            progress(f"generating with {b.name}")
        t0 = time.monotonic()
        outputs = await generate(b, items, params)
        res = ModelResult(b.name, b.engine, score(outputs, refs, report.tokenizer), outputs, time.monotonic() - t0)
        if judge_backend is not None:
            if progress:
                progress(f"judging {b.name} with {judge_backend.name}")
            res.judge = await judge(judge_backend, items, outputs, task, project=project)
        report.results.append(res)
    return report


def save_report(report: EvalReport, run_dir: Path) -> tuple[Path, Path]:
    """runs/<id>/eval/report.json and report.md (written atomically)."""
    folder = Path(run_dir) / REPORT_DIR
    jpath, mpath = folder / "report.json", folder / "report.md"
    atomic.write_json(jpath, report.to_json())
    atomic.write_text(mpath, report.to_markdown() + "\n")
    return jpath, mpath


def load_report(run_dir: Path) -> dict | None:
    path = Path(run_dir) / REPORT_DIR / "report.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


__all__ = ["EvalError", "EvalItem", "EvalReport", "ModelResult", "bleu_tokenizer", "evaluate",
           "generate", "held_out_items", "is_chinese", "items_from_records", "judge", "load_report",
           "parse_judgement", "save_report", "score"]
