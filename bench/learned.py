"""Did it learn? Real tasks nobody here wrote, trained with the presets on the embedded model, then judged.

Sets:
- identity: LLaMA-Factory's identity set (91 records). 15 records are held out by the benchmark (whole duplicate
  groups, seed 0, tuitune.core.data.groups); the other 76 are imported into a fresh project as accepted samples
  and trained with `tuitune train`'s presets and `eval: true` (the run holds out its own ~10% for early stopping
  and its verdict).
- translation: the first 300 records of LLaMA-Factory's alpaca_zh_demo, 30 held out the same way (long records:
  slow on a CPU).

Prints, per set: the presets chosen, the run's own verdict, then base / few-shot / tuned on the benchmark's held-out
questions (BLEU, chrF, ROUGE-L, exact/contains, how many answers ended with EOS, for identity how many say
"{{name}}" and "{{author}}"), that verdict, and the wall time (import -> trained, merged and evaluated).
The identity targets: >= 12/15 answers with both placeholders, every answer ending with EOS, the post-train stop
check 3/3, held-out ROUGE-L above 50 and clearly ahead of base and few-shot, under 15 minutes on a 2-core CPU.

    .venv/bin/python bench/learned.py                      # identity
    .venv/bin/python bench/learned.py --set translation    # or --set both
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "real"
SETS = {"identity": ("llamafactory_identity.json", None, 15), "translation": ("llamafactory_alpaca_zh_demo.json",
                                                                              300, 30)}


def split(rows: list[dict], held: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    from tuitune.core.data.groups import duplicate_groups, grouped_split
    from tuitune.core.data.samples import Sample

    groups = duplicate_groups([Sample(instruction=r["instruction"], input=r.get("input", ""), output=r["output"])
                               for r in rows])
    sp = grouped_split(groups, held, seed)
    return [rows[i] for i in sp.train], [rows[i] for i in sp.test]


def load_avg() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def run_set(name: str, workdir: Path, overrides: dict, existing: Path | None = None) -> dict:
    from tuitune.core.data.samples import Sample
    from tuitune.core.data.store import Store
    from tuitune.core.evaluation.evaluate import (
        answer_budget,
        evaluate,
        item_budget,
        items_from_records,
        run_split,
        three_way,
    )
    from tuitune.core.evaluation.local import LocalModel
    from tuitune.core.serving.chat import GenParams
    from tuitune.core.training import jobs
    from tuitune.core.training.config import TrainConfig
    from tuitune.core.training.events import read_events
    from tuitune.settings import load_settings

    fname, first, n_held = SETS[name]
    rows = json.loads((REAL / fname).read_text(encoding="utf-8"))[:first]
    train_rows, held_rows = split(rows, n_held)
    t0 = time.monotonic()
    print(f"\n== {name}: {len(rows)} records, {len(train_rows)} imported, {len(held_rows)} held out by the "
          f"benchmark; load average {load_avg()} on {os.cpu_count()} CPUs", flush=True)
    if existing is None:
        project = workdir / name
        project.mkdir(parents=True)
        with Store.open(project) as store:
            store.add_samples([Sample(instruction=r["instruction"], input=r.get("input", ""), output=r["output"],
                                      origin="import", status="accepted") for r in train_rows])
        run_id = jobs.launch(load_settings(project=project), TrainConfig(eval=True).updated(**overrides))
        run = project / "runs" / run_id
    else:  # a finished run trained on this set's training records (e.g. `tuitune train --data`): evaluate only
        run, run_id = existing.resolve(), existing.name
    cfg = TrainConfig.load(run / "config.yaml")
    print(f"run {run_id}: holdout {cfg.holdout}, batch {cfg.batch_size} ({cfg.micro_batch_size} per pass), epochs "
          f"{cfg.epochs}, lr {cfg.learning_rate}, LoRA r{cfg.lora_r}/alpha {cfg.lora_alpha}, save/eval every "
          f"{cfg.save_steps} steps, early stopping patience {cfg.early_stopping_patience}", flush=True)
    info = jobs.wait(run, timeout=6 * 3600, poll=5)
    trained = time.monotonic() - t0
    events = read_events(run)[0]
    if info.status != "done":
        print(f"run ended {info.status}: {info.error}\n{(run / 'worker.log').read_text()[-3000:]}")
        return {"set": name, "status": info.status}
    steps = [e for e in events if e["event"] == "step"]
    evals = [e for e in events if e["event"] == "eval" and "eval_loss" in e]
    stops = next((e for e in events if e["event"] == "check" and e.get("check") == "stops"), {})
    verdict = next((e for e in events if e["event"] == "verdict"), {})
    curve = " ".join(f"{e['eval_loss']:.3f}@{e['step']}" for e in evals)
    print(f"trained {steps[-1]['step']}/{steps[-1]['max_steps']} steps, last loss {steps[-1]['loss']:.3f}; held-out "
          f"loss {curve}; stop check: {stops.get('details', '?')}", flush=True)
    print(f"run's own verdict ({verdict.get('n')} held-out records, k={verdict.get('few_shot_k')}, "
          f"{verdict.get('seconds')} s): {verdict.get('summary')}")
    what = "import -> trained, merged and evaluated"
    if existing is not None:  # the run's own span, first event to last
        trained, what = events[-1]["time"] - events[0]["time"], "worker start -> last event"
    print(f"wall time, {what}: {trained:.0f} s ({trained / 60:.1f} min); load average {load_avg()}", flush=True)

    # the benchmark's own held-out questions, never seen by the run
    t1 = time.monotonic()
    items = items_from_records([{"messages": Sample(instruction=r["instruction"], input=r.get("input", ""),
                                                    output=r["output"]).to_messages()} for r in held_rows])
    from tuitune.settings import Settings

    home = Settings().home  # the same precision as the run's own verdict: bf16 where measured faster
    base = LocalModel(cfg.base_path, cfg.base, probe_dir=home)
    tuned = LocalModel(run / "merged", run_id, probe_dir=home)
    budget = answer_budget(items, base.count_tokens, cap=cfg.max_length or 512)
    train, _, _ = run_split(run)
    contenders, sample = three_way(train, items, base, tuned, seed=cfg.seed, count_tokens=base.count_tokens,
                                   context=base.context, answer_tokens=budget)
    stopped: dict[str, list[bool]] = {}

    def note(msg: str) -> None:
        print(f"  {msg}", flush=True)

    cap = cfg.max_length or 512  # per item, as the run's own verdict: twice its reference + 32, at most cap
    report = asyncio.run(evaluate(items, contenders, run_id=run_id, params=GenParams(temperature=0.0,
                                  max_tokens=budget, seed=0), train_items=sample, progress=note,
                                  answer_limit=lambda it: item_budget(it, base.count_tokens, cap)))
    tuned_answers = report.by_role()["tuned"].outputs
    stopped["tuned"] = list(tuned.stopped) if len(tuned.stopped) == len(items) else []
    print(f"\n{len(items)} benchmark held-out questions, greedy, at most {budget} new tokens (per item: twice "
          f"its reference + 32) "
          f"({time.monotonic() - t1:.0f} s):")
    print(f"{'':28} {'BLEU':>6} {'chrF':>6} {'ROUGE-L':>8} {'exact':>6} {'contains':>8} {'chrF train':>10}")
    for r in report.results:
        m = r.metrics
        train_chrf = f"{r.train_metrics['chrf']:.1f}" if r.train_metrics else "-"
        print(f"{r.role + ' (' + r.model[:16] + ')':28} {m['bleu']:6.1f} {m['chrf']:6.1f} {m['rougeL']:8.1f} "
              f"{_pct(m['exact']):>6} {_pct(m['contains']):>8} {train_chrf:>10}")
    print(f"verdict: {report.verdict['text']}")
    result = {"set": name, "run": run_id, "wall_seconds": round(trained), "verdict": report.verdict["code"],
              "rougeL": {r.role: r.metrics["rougeL"] for r in report.results}}
    if name == "identity":
        both = sum("{{name}}" in a and "{{author}}" in a for a in tuned_answers)
        print(f'tuned answers with "{{{{name}}}}" and "{{{{author}}}}": {both}/{len(items)}; base: '
              f'{sum("{{name}}" in a for a in report.by_role()["base"].outputs)}/{len(items)} with "{{{{name}}}}"')
        result["placeholders"] = both
    if stopped["tuned"]:
        print(f"tuned answers that ended with EOS: {sum(stopped['tuned'])}/{len(items)}")
    for i, it in enumerate(items[:4]):
        print(f"\n  Q: {it.prompt[:100]}\n  reference: {it.reference[:120]}")
        for r in report.results:
            print(f"  {r.role}: {r.outputs[i][:120]}")
    return result


def _pct(x) -> str:
    return "-" if x is None else f"{x:.0f}%"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", dest="which", choices=["identity", "translation", "both"], default="identity")
    ap.add_argument("--keep", type=Path, help="Keep the projects in this folder (default: a temporary one).")
    ap.add_argument("--run", type=Path, help="Evaluate this finished run folder instead of training one (one set).")
    ap.add_argument("--override", action="append", default=[], metavar="FIELD=VALUE",
                    help="A TrainConfig field for the run, e.g. --override epochs=3 (default: the presets).")
    args = ap.parse_args(argv)
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.override)}
    names = ["identity", "translation"] if args.which == "both" else [args.which]
    with tempfile.TemporaryDirectory(prefix="tuitune-learned-") as tmp:
        workdir = args.keep or Path(tmp)
        results = [run_set(n, workdir, overrides, args.run) for n in names]
    print("\n" + json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
