"""The evaluation report: per model (contender) metrics and answers, the engine and dtype that produced them, the
few-shot examples, the verdict; saved as runs/<id>/eval/report.json and report.md (a Markdown table). The verdict
after training (source "verdict") is also kept as eval/verdict.json / verdict.md, so a later `tuitune eval` does
not replace its answers; such a later report on another engine says the verdict's number beside its own and
that the gap is the engines' (engine_gap_note, pointing at the run's engine parity check)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tuitune.core import atomic
from tuitune.core.evaluation.contenders import EvalItem

REPORT_DIR = "eval"
VERDICT_FILE = "verdict.json"  # the verdict's own report, beside the latest report.json
ROLE_TITLES = {"base": "base", "few_shot": "few-shot", "tuned": "tuned"}
SUMMARY_KEYS = ("bleu", "chrf", "rougeL", "exact", "contains", "short_n")


@dataclass
class ModelResult:
    model: str
    engine: str
    metrics: dict
    outputs: list[str]
    seconds: float
    judge: dict | None = None
    role: str = ""  # base / few_shot / tuned ("" outside a three-way comparison)
    train_metrics: dict | None = None  # the same metrics on a sample of training records
    train_outputs: list[str] = field(default_factory=list)
    dtype: str = ""  # the precision the engine computed in: bf16 / fp32 / fp16 ("" unknown)

    @property
    def engine_label(self) -> str:
        return f"{self.engine} ({self.dtype})" if self.dtype else self.engine

    def summary(self) -> dict:
        """The headline numbers (what the verdict event and the card carry)."""
        out = {k: self.metrics.get(k) for k in SUMMARY_KEYS}
        out.update(model=self.model, engine=self.engine, dtype=self.dtype)
        if self.judge and self.judge.get("mean") is not None:
            out["judge"] = self.judge["mean"]
        if self.train_metrics:
            out["train_chrf"] = self.train_metrics.get("chrf")
        return out


@dataclass
class EvalReport:
    run_id: str
    items: list[EvalItem]
    results: list[ModelResult] = field(default_factory=list)
    tokenizer: str = "13a"
    created_at: str = ""
    shots: list[EvalItem] = field(default_factory=list)
    train_items: list[EvalItem] = field(default_factory=list)
    verdict: dict | None = None
    source: str = "eval"  # eval (`tuitune eval`, /eval) | verdict (the run's own, after training)
    max_tokens: int | None = None  # the answer budget (per answer; "per_item" budgets say so in budget)
    budget: str = ""  # words: how long answers could be
    engine_note: str = ""  # beside another engine's verdict on the same run: both numbers and why they differ
    general: dict | None = None  # the forgetting check beside the verdict (forgetting.py): base vs tuned, general questions

    def by_role(self) -> dict[str, ModelResult]:
        return {r.role: r for r in self.results if r.role}

    def to_json(self) -> dict:
        def public(m: dict | None) -> dict | None:
            return None if m is None else {k: v for k, v in m.items() if k != "per_item"}

        return {
            "run_id": self.run_id, "created_at": self.created_at, "tokenizer": self.tokenizer, "n": len(self.items),
            "source": self.source, "max_tokens": self.max_tokens, "budget": self.budget,
            "engine_note": self.engine_note or None,
            "models": {r.model: {"engine": r.engine, "dtype": r.dtype, "role": r.role, "metrics": public(r.metrics),
                                 "train_metrics": public(r.train_metrics), "seconds": round(r.seconds, 2),
                                 "judge": r.judge} for r in self.results},
            "contenders": {role: r.summary() for role, r in self.by_role().items()},
            "verdict": self.verdict, "general": self.general,
            "few_shot": {"k": len(self.shots), "examples": [{"prompt": s.prompt, "answer": s.reference}
                                                            for s in self.shots]},
            "items": [{"prompt": it.prompt, "reference": it.reference,
                       "outputs": {r.model: r.outputs[i] for r in self.results},
                       "chrf": {r.model: r.metrics["per_item"]["chrf"][i] for r in self.results
                                if "per_item" in r.metrics}} for i, it in enumerate(self.items)],
            "train_items": [{"prompt": it.prompt, "reference": it.reference,
                             "outputs": {r.model: r.train_outputs[i] for r in self.results if r.train_outputs}}
                            for i, it in enumerate(self.train_items)],
        }

    def to_markdown(self) -> str:
        judged = any(r.judge for r in self.results)
        trained = any(r.train_metrics for r in self.results)
        head = (["model", "engine", "BLEU", "chrF", "ROUGE-L", "exact", "contains"]
                + (["judge (1-5)"] if judged else []) + (["chrF on train"] if trained else []) + ["dtype", "seconds"])
        short = max((r.metrics.get("short_n") or 0 for r in self.results), default=0)
        lines = [f"# Evaluation of run {self.run_id}", "",
                 f"{len(self.items)} held-out examples ({short} with a short reference for exact/contains); "
                 f"sacrebleu tokenizer `{self.tokenizer}`."
                 + (f" Few-shot: the base model with {len(self.shots)} training examples." if self.shots else "")
                 + f" Greedy answers by {', '.join(dict.fromkeys(r.engine_label for r in self.results))}"
                 + (f", {self.budget}." if self.budget else "."),
                 "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.results:
            m = r.metrics
            row = [r.model + (f" ({ROLE_TITLES[r.role]})" if r.role else ""), r.engine, f"{m['bleu']:.2f}",
                   f"{m['chrf']:.2f}", f"{m['rougeL']:.2f}", _pct(m.get("exact")), _pct(m.get("contains"))]
            if judged:
                row.append(f"{r.judge['mean']:.2f}" if r.judge and r.judge.get("mean") is not None else "-")
            if trained:
                row.append(f"{r.train_metrics['chrf']:.2f}" if r.train_metrics else "-")
            lines.append("| " + " | ".join(row + [r.dtype or "-", f"{r.seconds:.1f}"]) + " |")
        if self.verdict:
            lines += ["", f"**Verdict:** {self.verdict['text']}"]
        if self.general:
            lines += ["", f"**General answers:** {self.general['text']}" + (f". Warning: {self.general['warning']}."
                                                                          if self.general.get("warning") else ".")]
        if self.engine_note:
            lines += ["", f"**Engines:** {self.engine_note}"]
        lines += ["", "## Examples", ""]
        for i, it in enumerate(self.items[:5]):
            lines += [f"**Prompt {i + 1}:** {_one_line(it.prompt)}", "", f"- reference: {_one_line(it.reference)}"]
            lines += [f"- {r.model}{f' ({ROLE_TITLES[r.role]})' if r.role else ''}: {_one_line(r.outputs[i])}"
                      for r in self.results]
            lines.append("")
        return "\n".join(lines)


def _pct(x) -> str:
    return "-" if x is None else f"{x:.0f}%"


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[:limit] + "…"


def save_report(report: EvalReport, run_dir: Path) -> tuple[Path, Path]:
    """runs/<id>/eval/report.json and report.md (written atomically); the verdict's own also as verdict.json/.md.
    A later report gets its engine_note first (when the run has a verdict to set it beside)."""
    folder = Path(run_dir) / REPORT_DIR
    if report.source != "verdict" and not report.engine_note:
        report.engine_note = engine_gap_note(report, Path(run_dir))
    names = [("report.json", "report.md")] + ([(VERDICT_FILE, "verdict.md")] if report.source == "verdict" else [])
    data, text = report.to_json(), report.to_markdown() + "\n"
    for jname, mname in names[::-1]:  # report.json last: it is what a reader waits for
        atomic.write_json(folder / jname, data)
        atomic.write_text(folder / mname, text)
    return folder / "report.json", folder / "report.md"


def load_report(run_dir: Path, name: str = "report.json") -> dict | None:
    """A saved report (name: report.json, the latest; verdict.json, the verdict's own), or None."""
    path = Path(run_dir) / REPORT_DIR / Path(name).name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _tuned(report: EvalReport) -> ModelResult | None:
    roles = report.by_role()
    if "tuned" in roles:
        return roles["tuned"]
    named = [r for r in report.results if r.model == report.run_id]
    return named[0] if named else (report.results[-1] if len(report.results) == 1 else None)


def engine_gap_note(report: EvalReport, run_dir: Path) -> str:
    """Words for a report beside the run's own verdict: both tuned chrF numbers with the engine (and dtype) that
    produced each, whether the items are the same, and, where the engines differ, that the gap is engine-level,
    with the run's engine parity numbers (or how to get them). "" when the run has no verdict to compare."""
    from tuitune.core.evaluation.parity import event_lines
    from tuitune.core.training.run_dir import RunDir, read_all

    run = RunDir(Path(run_dir))
    state = read_all(run.events)
    v = state.verdict or {}
    theirs = (v.get("contenders") or {}).get("tuned") or {}
    mine = _tuned(report)
    if mine is None or theirs.get("chrf") is None or mine.metrics.get("chrf") is None:
        return ""
    v_engine = theirs.get("engine") or v.get("engine") or "transformers"
    v_dtype = theirs.get("dtype") or v.get("precision") or ""
    v_label = f"{v_engine} ({v_dtype})" if v_dtype else v_engine
    old = load_report(run.path, VERDICT_FILE)
    same = bool(old) and [i.get("prompt") for i in old.get("items", [])] == [it.prompt for it in report.items]
    words = (f"the run's verdict after training scored tuned chrF {theirs['chrf']:.2f} with {v_label}"
             + (f", answers up to {v['max_new_tokens']} tokens (each item's own budget)" if v.get("max_new_tokens")
                else "")
             + f"; this evaluation {mine.metrics['chrf']:.2f} with {mine.engine_label}"
             + (f", {report.budget}" if report.budget else "")
             + (" on the same held-out items" if same else " (on other items)") + ".")
    if (mine.engine, mine.dtype) == (v_engine, v_dtype):
        return words + " Same engine and precision: the difference comes from the answer budget or batching."
    if not same:
        return words
    parity = [w for level, w in event_lines(state.parity) if level in ("info", "warning")]
    return (words + " Same model, same items: the gap is engine-level (the engines give different greedy answers"
            + (f"): {'; '.join(parity)}" if parity else
               f"); no engine parity numbers for this run yet: `tuitune runs parity {run.id}` measures them") + ".")
