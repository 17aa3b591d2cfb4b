"""The automatic evaluation at the end of a training run (TrainConfig `eval`): base vs few-shot vs tuned on the
run's held-out records, in the worker's process with transformers (local.py), greedy; the report is saved in
runs/<id>/eval/ (verdict.json, and report.json until a later `tuitune eval` replaces it) and summed up in one
`verdict` event, which names the engine and dtype that produced the answers (a `tuitune eval` on vLLM can score
the same model differently: its report says both numbers, and the engine parity check measures the engines' gap)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from tuitune.core.evaluation.contenders import items_from_records
from tuitune.core.evaluation.evaluate import answer_budget, evaluate, item_budget, three_way
from tuitune.core.evaluation.metrics import EvalError
from tuitune.core.evaluation.report import REPORT_DIR, VERDICT_FILE, save_report


def _skipped(why: str) -> dict:
    return {"verdict": "skipped", "summary": why, "report": None, "contenders": {}}


def evaluate_run(run_dir: Path, cfg, train: list[dict], held: list[dict],
                 progress: Callable[[str], None] | None = None) -> dict:
    """The `verdict` event's fields: verdict (code), summary (words), report (path in the run folder),
    contenders ({base, few_shot, tuned}: headline metrics), n, few_shot_k, seconds."""
    import time

    from tuitune.core.evaluation.local import LocalModel
    from tuitune.core.serving.chat import GenParams
    from tuitune.settings import Settings

    run_dir = Path(run_dir)
    items = items_from_records(held)
    if not items:
        return _skipped("no held-out chat records to compare on (hold out at least 8 records for a verdict)")
    merged = run_dir / "merged"
    if not (merged / "config.json").exists():
        return _skipped("no merged model to evaluate (the run was trained with merge off)")
    t0 = time.monotonic()
    # The worker is a process entry point of its own: it reads the settings from the environment it was started with.
    settings = Settings()
    base = LocalModel(cfg.base_path, cfg.base, probe_dir=settings.home)  # bf16 where measured faster (bf16_probe)
    tuned = LocalModel(merged, run_dir.name, probe_dir=settings.home)
    cap = cfg.max_length or 512
    budget = answer_budget(items, base.count_tokens, cap=cap)
    contenders, sample = three_way(train, items, base, tuned, seed=cfg.seed, count_tokens=base.count_tokens,
                                   context=base.context, answer_tokens=budget)
    doing = [""]

    def stage(msg: str) -> None:  # "generating with X": say it, then count its answers batch by batch
        doing[0] = msg
        if progress:
            progress(msg)

    def answered(done: int, total: int) -> None:
        if progress:
            progress(f"{doing[0]}: {done}/{total} answers")

    base.on_batch = tuned.on_batch = answered
    try:
        report = asyncio.run(evaluate(items, contenders, run_id=run_dir.name, judge_backend=_judge(settings),
                                      params=GenParams(temperature=0.0, max_tokens=budget, seed=0),
                                      progress=stage, train_items=sample,
                                      answer_limit=lambda it: item_budget(it, base.count_tokens, cap)))
    except EvalError as e:
        return _skipped(f"evaluation failed: {e}")
    report.source = "verdict"
    save_report(report, run_dir)
    verdict = report.verdict or {}
    return {"verdict": verdict.get("code", "inconclusive"), "summary": verdict.get("text", ""),
            "report": f"{REPORT_DIR}/report.json", "verdict_report": f"{REPORT_DIR}/{VERDICT_FILE}",
            "n": len(items), "engine": tuned.engine, "few_shot_k": len(report.shots),
            "contenders": {role: r.summary() for role, r in report.by_role().items()},
            "max_new_tokens": budget, "precision": "bf16" if tuned.bf16 else "fp32",
            "seconds": round(time.monotonic() - t0, 1)}


def _judge(settings):
    """The configured teacher endpoint as the judge, or None."""
    from tuitune.core.evaluation.judge import teacher_judge

    return teacher_judge(settings)
