"""What the verdict benchmarks (verdict_budget.py, verdict_speed.py) share: a finished run from the command line, its
config and held-out items, and the line that says what is measured where."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def load(doc: str, argv: list[str] | None, default_items: int) -> tuple[argparse.Namespace, Path, object, list]:
    """(args, run folder, its TrainConfig, its held-out items) for RUN_DIR [--items N] [--roles base,tuned]."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--items", type=int, default=default_items,
                    help=f"held-out items to answer (default {default_items or 'all'})")
    ap.add_argument("--roles", default="base,tuned", help="contenders to time: base, tuned (comma-separated)")
    args = ap.parse_args(argv)

    from tuitune.core.evaluation.evaluate import held_out_items
    from tuitune.core.training.config import TrainConfig

    run = args.run.resolve()
    cfg = TrainConfig.load(run / "config.yaml")
    items = held_out_items(run)
    items = items[: args.items] if args.items else items
    print(f"{len(items)} held-out items of {run.name}; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}")
    return args, run, cfg, items
