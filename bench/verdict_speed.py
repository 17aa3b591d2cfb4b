"""The after-training verdict's generation on a CPU, side by side in one run: as it was (fp32 weights, at most 8 rows
per batch; the batches are planned as now, where they used to be consecutive runs of 8, so "before" is if anything
faster than it was) vs as it is now (bf16 weights where bf16_probe measured decoding faster, as many rows as the key/value cache
budget fits, at most 32). Same run, same held-out items, each item's own answer budget, greedy; prints the wall time
of each, their ratio, chrF / ROUGE-L and EOS counts under both, and how many answers are word for word the same
(bf16 rounds differently, so greedy answers can part ways after a while).

    .venv/bin/python bench/verdict_speed.py RUN_DIR [--items 27] [--roles base,tuned]

RUN_DIR: a finished run with a merged model and held-out records (e.g. one from bench/learned.py --keep DIR).
"""

from __future__ import annotations

import sys
import time


def main(argv: list[str] | None = None) -> int:
    from held_out_run import load

    from tuitune.core.evaluation.evaluate import item_budget, score
    from tuitune.core.evaluation.local import LocalModel, decode_in_bf16
    from tuitune.settings import Settings

    args, run, cfg, items = load(__doc__, argv, default_items=0)
    paths = {"base": cfg.base_path, "tuned": run / "merged"}
    home = Settings().home
    now_bf16 = decode_in_bf16("cpu", home)
    ways = {"before (fp32, 8 rows)": (False, 8), f"now ({'bf16' if now_bf16 else 'fp32'}, <=32 rows)": (now_bf16, 32)}
    totals = dict.fromkeys(ways, 0.0)
    cap = cfg.max_length or 512
    for role in args.roles.split(","):
        answers = {}
        for label, (bf16, rows) in ways.items():
            model = LocalModel(paths[role], role, bf16=bf16)
            limits = [item_budget(it, model.count_tokens, cap) for it in items]
            t0 = time.monotonic()
            outs = model.answer([it.messages for it in items], max(limits), batch=rows, limits=limits)
            dt = time.monotonic() - t0
            totals[label] += dt
            answers[label] = outs
            m = score(outs, [it.reference for it in items])
            print(f"{role:5} {label:24} {dt:7.1f} s  chrF {m['chrf']:5.1f}  ROUGE-L {m['rougeL']:5.1f}  "
                  f"ended with EOS {sum(model.stopped)}/{len(items)}", flush=True)
        same = sum(a == b for a, b in zip(*answers.values()))
        print(f"{role:5} answers word for word the same under both: {same}/{len(items)}")
    before, now = totals.values()
    print(f"total: before {before:.0f} s, now {now:.0f} s; now / before = {now / max(before, 1e-9):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
