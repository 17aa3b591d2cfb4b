"""The after-training verdict's answer budget on a CPU, side by side in one run: one budget for every answer
(twice the longest reference + 32, at most max_length: what the verdict used before) vs one per item (twice that
item's reference + 32, at most max_length). Same run, same held-out items, same models, greedy; prints the wall
time of each, their ratio, and chrF / ROUGE-L per contender under both, so the saving can be weighed against
what it changes in the scores.

    .venv/bin/python bench/verdict_budget.py RUN_DIR [--items 8] [--roles base,tuned]

RUN_DIR: a finished run with a merged model and held-out records (e.g. one from bench/learned.py --keep DIR).
"""

from __future__ import annotations

import asyncio
import sys
import time


def main(argv: list[str] | None = None) -> int:
    from held_out_run import load

    from tuitune.core.evaluation.evaluate import _answers, answer_budget, item_budget, score
    from tuitune.core.evaluation.local import LocalModel
    from tuitune.core.serving.chat import GenParams

    args, run, cfg, items = load(__doc__, argv, default_items=8)
    models = {"base": lambda: LocalModel(cfg.base_path, cfg.base), "tuned": lambda: LocalModel(run / "merged")}
    cap = cfg.max_length or 512
    totals = {"one budget": 0.0, "per item": 0.0}
    for role in args.roles.split(","):
        model = models[role]()
        one = answer_budget(items, model.count_tokens, cap)
        limits = [item_budget(it, model.count_tokens, cap) for it in items]
        print(f"{role}: one budget {one} tokens; per item {min(limits)}-{max(limits)} (mean "
              f"{sum(limits) / len(limits):.0f})")
        refs = [it.reference for it in items]
        for label, lim in (("one budget", None), ("per item", limits)):
            t0 = time.monotonic()
            outs = asyncio.run(_answers(model, [it.messages for it in items],
                                        GenParams(temperature=0.0, max_tokens=one, seed=0), limits=lim))
            dt = time.monotonic() - t0
            totals[label] += dt
            m = score(outs, refs)
            print(f"  {label:10} {dt:7.1f} s  chrF {m['chrf']:5.1f}  ROUGE-L {m['rougeL']:5.1f}  "
                  f"ended with EOS {sum(model.stopped)}/{len(items)}", flush=True)
    print(f"total: one budget {totals['one budget']:.0f} s, per item {totals['per item']:.0f} s; per item / one "
          f"budget = {totals['per item'] / max(totals['one budget'], 1e-9):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
