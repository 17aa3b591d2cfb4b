"""The evaluation report: per model (contender) metrics and answers, the few-shot examples, the verdict; saved as
runs/<id>/eval/report.json and report.md (a Markdown table)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tuitune.core import atomic
from tuitune.core.evaluation.contenders import EvalItem

REPORT_DIR = "eval"
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

    def summary(self) -> dict:
        """The headline numbers (what the verdict event and the card carry)."""
        out = {k: self.metrics.get(k) for k in SUMMARY_KEYS}
        out.update(model=self.model, engine=self.engine)
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

    def by_role(self) -> dict[str, ModelResult]:
        return {r.role: r for r in self.results if r.role}

    def to_json(self) -> dict:
        def public(m: dict | None) -> dict | None:
            return None if m is None else {k: v for k, v in m.items() if k != "per_item"}

        return {
            "run_id": self.run_id, "created_at": self.created_at, "tokenizer": self.tokenizer, "n": len(self.items),
            "models": {r.model: {"engine": r.engine, "role": r.role, "metrics": public(r.metrics),
                                 "train_metrics": public(r.train_metrics), "seconds": round(r.seconds, 2),
                                 "judge": r.judge} for r in self.results},
            "contenders": {role: r.summary() for role, r in self.by_role().items()},
            "verdict": self.verdict,
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
                + (["judge (1-5)"] if judged else []) + (["chrF on train"] if trained else []) + ["seconds"])
        short = max((r.metrics.get("short_n") or 0 for r in self.results), default=0)
        lines = [f"# Evaluation of run {self.run_id}", "",
                 f"{len(self.items)} held-out examples ({short} with a short reference for exact/contains); "
                 f"sacrebleu tokenizer `{self.tokenizer}`."
                 + (f" Few-shot: the base model with {len(self.shots)} training examples." if self.shots else ""),
                 "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.results:
            m = r.metrics
            row = [r.model + (f" ({ROLE_TITLES[r.role]})" if r.role else ""), r.engine, f"{m['bleu']:.2f}",
                   f"{m['chrf']:.2f}", f"{m['rougeL']:.2f}", _pct(m.get("exact")), _pct(m.get("contains"))]
            if judged:
                row.append(f"{r.judge['mean']:.2f}" if r.judge and r.judge.get("mean") is not None else "-")
            if trained:
                row.append(f"{r.train_metrics['chrf']:.2f}" if r.train_metrics else "-")
            lines.append("| " + " | ".join(row + [f"{r.seconds:.1f}"]) + " |")
        if self.verdict:
            lines += ["", f"**Verdict:** {self.verdict['text']}"]
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
    """runs/<id>/eval/report.json and report.md (written atomically)."""
    folder = Path(run_dir) / REPORT_DIR
    jpath, mpath = folder / "report.json", folder / "report.md"
    atomic.write_json(jpath, report.to_json())
    atomic.write_text(mpath, report.to_markdown() + "\n")
    return jpath, mpath


def load_report(run_dir: Path) -> dict | None:
    path = Path(run_dir) / REPORT_DIR / "report.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
