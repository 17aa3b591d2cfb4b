"""What the worker runs after training (training/after.py names `after_training` as its step): the engine parity
check on the merged model, then the automatic evaluation (TrainConfig `eval`): base vs few-shot vs tuned on the
run's held-out records, in the worker's process with transformers (local.py), greedy; the report is saved in
runs/<id>/eval/ (verdict.json, and report.json until a later `tuitune eval` replaces it) and summed up in one
`verdict` event, which names the engine and dtype that produced the answers (a `tuitune eval` on vLLM can score
the same model differently: its report says both numbers, and the engine parity check measures the engines' gap).
Beside the verdict, with the same two loaded models, the forgetting check (forgetting.py): base vs tuned on general
questions that ship with the app, in the report and the event as `general`."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tuitune.core.evaluation.contenders import items_from_records
from tuitune.core.evaluation.evaluate import answer_budget, evaluate, item_budget, three_way
from tuitune.core.evaluation.metrics import EvalError
from tuitune.core.evaluation.report import REPORT_DIR, VERDICT_FILE, save_report

if TYPE_CHECKING:
    from tuitune.core.training.after import Trained
    from tuitune.core.training.events import EventWriter
    from tuitune.core.training.run_dir import RunDir
    from tuitune.settings import Settings


def after_training(t: Trained) -> None:
    """The worker's step after the merge and the stop check: engine parity (merged runs, not pretraining), then the
    held-out verdict (`eval`, SFT methods), each one's events written as it goes."""
    from tuitune.core.training.config import PREFERENCE_METHODS

    cfg = t.cfg
    if cfg.merge and cfg.method != "pretrain":
        parity_step(cfg, t.run, t.events, t.cuda, t.settings)
    if cfg.eval and cfg.method not in PREFERENCE_METHODS and cfg.method != "pretrain":
        t.events.emit("phase", phase="evaluating", message="held-out verdict: loading base and tuned models")
        t.events.emit("verdict", **evaluate_run(t.run.path, cfg, t.train, t.held, t.settings,
                                                progress=lambda msg: t.events.emit(
                                                    "phase", phase="evaluating", message=f"held-out verdict: {msg}")))


def _skipped(why: str) -> dict:
    return {"verdict": "skipped", "summary": why, "report": None, "contenders": {}}


def evaluate_run(run_dir: Path, cfg, train: list[dict], held: list[dict], settings: Settings,
                 progress: Callable[[str], None] | None = None) -> dict:
    """The `verdict` event's fields: verdict (code), summary (words), report (path in the run folder),
    contenders ({base, few_shot, tuned}: headline metrics), n, few_shot_k, seconds, and general (the forgetting
    check: forgetting.event_fields). `settings`: the home (bf16 probe cache) and the judge's teacher."""
    import time

    from tuitune.core.evaluation import forgetting
    from tuitune.core.evaluation.local import LocalModel
    from tuitune.core.serving.chat import GenParams

    run_dir = Path(run_dir)
    items = items_from_records(held)
    if not items:
        return _skipped("no held-out chat records to compare on (hold out at least 8 records for a verdict)")
    merged = run_dir / "merged"
    if not (merged / "config.json").exists():
        return _skipped("no merged model to evaluate (the run was trained with merge off)")
    t0 = time.monotonic()
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
    general = forgetting.check(base, tuned, progress=stage)
    report.general = general
    save_report(report, run_dir)
    verdict = report.verdict or {}
    return {"verdict": verdict.get("code", "inconclusive"), "summary": verdict.get("text", ""),
            "report": f"{REPORT_DIR}/report.json", "verdict_report": f"{REPORT_DIR}/{VERDICT_FILE}",
            "n": len(items), "engine": tuned.engine, "few_shot_k": len(report.shots),
            "contenders": {role: r.summary() for role, r in report.by_role().items()},
            "max_new_tokens": budget, "precision": "bf16" if tuned.bf16 else "fp32",
            "general": forgetting.event_fields(general), "seconds": round(time.monotonic() - t0, 1)}


def _judge(settings):
    """The configured teacher endpoint as the judge, or None."""
    from tuitune.core.evaluation.judge import teacher_judge

    return teacher_judge(settings)


def parity_default(cuda: bool) -> tuple[bool, str]:
    """(on?, why) for an unset `parity`: on with a CUDA GPU where vLLM is installed; off on a CPU, where the vLLM
    side costs a server start (measured 30-96 s on the 135M embedded model on a 2-core CPU, about as long as a
    short run's training)."""
    from tuitune.core.serving.preflight import vllm_unavailable_reason

    if not cuda:
        return False, ("off on a CPU (parity unset): vLLM's start there costs 30-100 s; run `tuitune runs "
                       "parity RUN` when you want it, or train with --parity")
    reason = vllm_unavailable_reason()
    if reason:
        return False, f"off (parity unset): {reason}"
    return True, "on (parity unset): a CUDA GPU with vLLM installed"


def parity_step(cfg, run: RunDir, events: EventWriter, cuda: bool, settings: Settings | None = None) -> None:
    """The engine parity check on the merged folder (parity.py), or a `parity` event saying why not."""
    from tuitune.core.evaluation.parity import ParityError, parity_check

    on, why = (cfg.parity, "on (parity: true)" if cfg.parity else "off (parity: false)") if cfg.parity is not None \
        else parity_default(cuda)
    if not on:
        events.emit("parity", skipped=why.replace("RUN", run.id), engines=[], pairs=[], warnings=[],
                    summary=f"engine parity check {why.replace('RUN', run.id)}")
        return
    events.emit("phase", phase="parity", message="engine parity: answering held-out prompts with each engine")

    def say(msg: str) -> None:
        events.emit("phase", phase="parity", message=msg)

    try:
        parity_check(run.path, engines=("transformers", "vllm"), n=cfg.parity_prompts, settings=settings,
                     progress=say)
    except (ParityError, OSError, ValueError, RuntimeError, MemoryError) as e:  # a check: the trained run stands
        why = str(e) if isinstance(e, ParityError) else f"failed ({type(e).__name__}: {e}); see worker.log"
        if not isinstance(e, ParityError):
            traceback.print_exc()
        events.emit("parity", skipped=why, engines=[], pairs=[], warnings=[], summary=f"engine parity: {why}")
