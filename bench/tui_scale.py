"""The review screen at scale, measured side by side in one run:

1. a project with --samples samples (default 100,000; real Alpaca demo texts, varied) and a small one (1,000),
   both bulk-inserted into real SQLite;
2. for each, in a 160x48 headless terminal: time from app start (make_app + run_test, imports excluded) to the
   first painted frame of the review screen with the first row and its detail; then 100 consecutive
   down-arrow keys, each timed from the key event to the first painted frame that shows the new sample in
   the detail pane (cursor moved, list repainted, detail refreshed, frame encoded for the terminal); the next
   key is sent as soon as that frame is painted. Textual paints at most 60 frames a second, so a key waits for
   the next 16.7 ms frame slot: a key costs 16.7 ms at best; once its work passes a slot it costs two;
3. optionally (--baseline) the time to open a plain Textual DataTable filled with the same rows, the approach
   the virtualised list replaces.
Also: the same keys queued all at once (a held-down key), and a text search over every sample.

--before DIR measures another copy of the code (e.g. `git worktree add /tmp/before COMMIT`, or
`git archive COMMIT tuitune | tar -x -C DIR`) on the same projects, each tree in a fresh interpreter,
alternating --rounds times so that both see the same load; medians are printed side by side.

Prints the numbers, the big/small ratios (1.0 = cost independent of the project size) and the targets:
launch < 1 s and < 25 ms per key with 100,000 samples. Wall times grow with the machine's load (printed);
CPU times much less.

    .venv/bin/python bench/tui_scale.py [--samples 100000] [--keys 100] [--baseline] [--before DIR --rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "fixtures" / "real"
sys.path.insert(0, str(REPO))

SIZE = (160, 48)


def texts() -> list[tuple[str, str, str]]:
    """Real instruction/input/output triples when the shared fixtures are there, else made-up ones."""
    out = []
    for name in ("llamafactory_alpaca_en_demo.json", "llamafactory_alpaca_zh_demo.json"):
        path = REAL / name
        if path.exists():
            out += [(r["instruction"], r["input"], r["output"]) for r in json.loads(path.read_text("utf-8"))]
    return out or [(f"Explain topic {i} in two sentences.", "", f"Topic {i} is ... " * 20) for i in range(500)]


def make_project(root: Path, n: int) -> Path:
    """Bulk insert n samples in one transaction (statuses, ratings and rounds mixed like a real project)."""
    from tuitune.core.data.samples import Sample
    from tuitune.core.data.store import Store, now

    project = root / f"p{n}"
    base = texts()
    at = now()
    with Store.open(project) as store, store.transaction() as conn:
        rounds = max(1, n // 2000)
        conn.executemany("INSERT INTO rounds (id, started_at, status) VALUES (?, ?, 'finished')",
                         [(r, at) for r in range(1, rounds + 1)])
        rows = []
        for i in range(n):
            ins, inp, out = base[i % len(base)]
            s = Sample(instruction=f"{ins} (variant {i})", input=inp, output=out, origin="synth",
                       round_id=1 + i % rounds, status=("pending", "pending", "accepted", "rejected")[i % 4],
                       rating=(None, 3, 5)[i % 3], reason="too short / incomplete" if i % 4 == 3 else "")
            rows.append((s.instruction, s.input, s.output, "", "[]", s.status, s.rating, s.reason, s.origin,
                         s.round_id, None, s.key(), at, at))
        conn.executemany(
            "INSERT INTO samples (instruction, input, output, system, history, status, rating, reason, origin, "
            "round_id, original, key, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    return project


class FrameClock:
    """Times each frame the app paints. Headless Textual skips encoding a frame for the terminal; we do it here
    (render_segments) so the times include everything a real terminal session costs except the wire."""

    def __init__(self, app, screen_ref) -> None:
        from textual._compositor import CompositorUpdate

        self.frames: list[tuple[float, int | None]] = []  # (time, sample shown in the detail pane)
        original = app._display

        def display(screen, renderable) -> None:
            if isinstance(renderable, CompositorUpdate):
                renderable.render_segments(app.console)
                review = screen_ref()
                self.frames.append((time.perf_counter(), review._shown if review is not None else None))
            original(screen, renderable)

        app._display = display

    async def painted(self, sample_id: int, since: float, timeout: float = 60.0) -> float:
        """Wait for the first frame after `since` that shows `sample_id`; return its time."""
        end = time.perf_counter() + timeout
        while True:
            for t, shown in reversed(self.frames):
                if t < since:
                    break
                if shown == sample_id:
                    return min(t for t, s in self.frames if t >= since and s == sample_id)
            if time.perf_counter() > end:
                raise TimeoutError(f"no frame showed sample {sample_id}")
            await asyncio.sleep(0.0005)


def detail_text(screen) -> str:
    """The detail pane's text (this tree's DetailView, or the Static of code from before it)."""
    detail = getattr(screen, "detail", None)
    return detail.text if detail is not None else str(screen.query_one("#detail-text").render())


async def measure(project: Path, keys: int) -> dict:
    from textual import events

    try:
        from tuitune.core.data.store import Store
    except ImportError:  # a tree from before core was grouped by stage (--before)
        from tuitune.core.store import Store
    from tuitune.settings import load_settings
    from tuitune.tui.app import make_app
    from tuitune.tui.screens.review import ReviewScreen

    t0, c0 = time.perf_counter(), time.process_time()
    app = make_app(load_settings(project=project, home=project / "home"))
    holder: list = []
    clock = FrameClock(app, lambda: holder[0] if holder else None)
    async with app.run_test(size=SIZE) as pilot:
        t_app = time.perf_counter()
        screen = ReviewScreen(Store.open(project), status=None)
        holder.append(screen)
        app.push_screen(screen)
        with Store.open(project) as store:  # the first sample, found independently of the screen
            first = store.conn.execute("SELECT MIN(id) FROM samples").fetchone()[0]
        t_ready = await clock.painted(first, t_app)
        cpu_launch = time.process_time() - c0  # includes the loader thread
        lst = screen.sample_list
        assert lst.row(0) is not None and lst.ids[0] == first
        while not lst.loaded:  # the rest of the ids (loaded after the first rows are painted)
            await asyncio.sleep(0.005)
        t_all = time.perf_counter()
        await pilot.pause()
        latencies = []
        c1 = time.process_time()
        for i in range(keys):
            expected = lst.ids[i + 1]
            t = time.perf_counter()
            app._driver.send_message(events.Key("down", None))
            latencies.append(await clock.painted(expected, t) - t)
        cpu_per_key = (time.process_time() - c1) / keys
        assert lst.current_id == lst.ids[keys] and f"#{lst.ids[keys]} " in detail_text(screen), \
            "the detail pane lags behind"
        # a held-down key: 100 presses queued at once; the detail pane renders only the sample you stop on
        start = lst.cursor
        t = time.perf_counter()
        for _ in range(keys):
            app._driver.send_message(events.Key("down", None))
        burst = await clock.painted(lst.ids[start + keys], t) - t
        total = len(lst.ids)
        t = time.perf_counter()  # a search scans every text (LIKE), in the loader thread
        screen._refilter(search="crepes")
        while not (lst.loaded and screen.filter.search == "crepes" and not screen._loading):
            await asyncio.sleep(0.001)
        search = (time.perf_counter() - t, len(lst.ids))
    latencies.sort()
    return {"rows": total, "launch": t_ready - t0, "cpu_launch": cpu_launch, "all_ids": t_all - t0, "push": t_ready - t_app,
            "per_key": sum(latencies) / keys, "p95": latencies[int(0.95 * (keys - 1))], "max": latencies[-1], "cpu_per_key": cpu_per_key, "search": search,
            "burst": burst}


async def datatable_open(project: Path) -> float:
    """Baseline: a plain DataTable holding every row (what a non-virtualised list costs to open)."""
    from textual.app import App
    from textual.widgets import DataTable

    from tuitune.core.data.store import Store

    class Plain(App):
        def compose(self):
            yield DataTable()

    t0 = time.perf_counter()
    app = Plain()
    async with app.run_test(size=SIZE) as pilot:
        with Store.open(project) as store:
            rows = store.conn.execute(
                "SELECT id, status, rating, round_id, substr(instruction, 1, 160) FROM samples ORDER BY id").fetchall()
        table = app.query_one(DataTable)
        table.add_columns("id", "status", "rating", "round", "instruction")
        table.add_rows(rows)
        await pilot.pause()
    return time.perf_counter() - t0


def child(tree: str, projects: list[str], keys: int) -> None:
    """Measure the projects with the code in `tree` (a fresh interpreter per tree); print JSON."""
    sys.path.insert(0, tree)
    out = {}
    for project in projects:  # the first (small) one also warms imports, so both compare fairly
        out[project] = asyncio.run(measure(Path(project), keys))
    print(json.dumps(out))


def for_tree(tree: Path, projects: list[Path]) -> list[Path]:
    """Copies of the projects that an older tree can open: its store refuses a newer schema, so the copies
    claim the newest version it knows (later migrations only add tables and columns the review screen doesn't
    read)."""
    probe = ("import sys; sys.path.insert(0, sys.argv[1])\n"
             "try:\n from tuitune.core.data.store import MIGRATIONS\n"
             "except ImportError:\n from tuitune.core.store import MIGRATIONS\n"
             "print(len(MIGRATIONS))")
    known = subprocess.run([sys.executable, "-c", probe, str(tree)], check=True, capture_output=True, text=True)
    version = int(known.stdout)
    out = []
    for project in projects:
        copy = project.with_name(f"{project.name}-{tree.name}")
        if not copy.exists():
            shutil.copytree(project, copy)
            with sqlite3.connect(copy / "tuitune.db") as conn:
                if conn.execute("PRAGMA user_version").fetchone()[0] > version:
                    conn.execute(f"PRAGMA user_version = {version}")
        out.append(copy)
    return out


def run_tree(tree: Path, projects: list[Path], keys: int) -> list[dict]:
    cmd = [sys.executable, __file__, "--child", str(tree), "--keys", str(keys), *map(str, projects)]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"measuring {tree} failed:\n{done.stderr[-3000:]}")
    res = json.loads(done.stdout.strip().splitlines()[-1])
    return [res[str(p)] for p in projects]


def median_of(runs: list[dict]) -> dict:
    out = dict(runs[0])
    for k, v in runs[0].items():
        if isinstance(v, float):
            out[k] = statistics.median(r[k] for r in runs)
    return out


def report(label: str, small: dict, big: dict, keys: int) -> None:
    for size, r in (("small", small), ("big", big)):
        print(f"{label}{size:>5}: {r['rows']:>7,} rows | launch -> review interactive {r['launch'] * 1000:7.1f} ms "
              f"(of which review screen {r['push'] * 1000:6.1f} ms; CPU {r['cpu_launch'] * 1000:6.1f} ms) | "
              f"all ids {r['all_ids'] * 1000:6.1f} ms | {keys} x down: "
              f"mean {r['per_key'] * 1000:5.1f} ms/key, p95 {r['p95'] * 1000:5.1f}, max {r['max'] * 1000:5.1f}; "
              f"CPU {r['cpu_per_key'] * 1000:5.1f} ms/key")
    for size, r in (("small", small), ("big", big)):
        print(f"{label}{size:>5}: {keys} down keys queued at once (key held down): last sample painted after "
              f"{r['burst'] * 1000:.0f} ms ({r['burst'] / keys * 1000:.1f} ms/key); search 'crepes' -> "
              f"{r['search'][1]:,} matches in {r['search'][0] * 1000:.0f} ms (off the UI thread)")
    print(f"{label}ratio big/small: launch {big['launch'] / small['launch']:.2f}x, review screen "
          f"{big['push'] / small['push']:.2f}x, per key {big['per_key'] / small['per_key']:.2f}x")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--small", type=int, default=1_000)
    ap.add_argument("--keys", type=int, default=100)
    ap.add_argument("--baseline", action="store_true", help="also time a plain DataTable with every row")
    ap.add_argument("--before", type=Path, help="another copy of the code to measure side by side")
    ap.add_argument("--rounds", type=int, default=1, help="runs per tree (medians are printed)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("projects", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.projects, args.keys)
        return 0

    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load average {load:.1f} (wall times grow with load; CPU times less)")
    with tempfile.TemporaryDirectory(prefix="tuitune-bench-") as tmp:
        t = time.perf_counter()
        big = make_project(Path(tmp), args.samples)
        small = make_project(Path(tmp), args.small)
        print(f"setup: {args.samples:,} + {args.small:,} samples inserted in {time.perf_counter() - t:.1f} s")
        trees = {"now": REPO, **({"before": args.before.resolve()} if args.before else {})}
        runs: dict[str, list[list[dict]]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, tree in trees.items():
                projects = [small, big] if tree == REPO else for_tree(tree, [small, big])
                runs[name].append(run_tree(tree, projects, args.keys))
        results = {name: (median_of([r[0] for r in rs]), median_of([r[1] for r in rs])) for name, rs in runs.items()}
        print(f"load average after: {os.getloadavg()[0]:.1f}; medians of {args.rounds} run(s) per tree")
        for name, (res_small, res_big) in results.items():
            report(f"{name:>6} " if args.before else "", res_small, res_big, args.keys)
        res_small, res_big = results["now"]
        if args.before:
            b_big = results["before"][1]
            print(f"now/before with {args.samples:,}: per key {res_big['per_key'] / b_big['per_key']:.2f}x wall, "
                  f"{res_big['cpu_per_key'] / b_big['cpu_per_key']:.2f}x CPU; launch "
                  f"{res_big['launch'] / b_big['launch']:.2f}x")
        ok_launch, ok_key = res_big["launch"] < 1.0, res_big["per_key"] < 0.025
        print(f"target launch < 1 s with {args.samples:,}: {res_big['launch']:.3f} s "
              f"{'OK' if ok_launch else 'MISSED'}")
        print(f"target < 25 ms per key with {args.samples:,}: {res_big['per_key'] * 1000:.1f} ms "
              f"{'OK' if ok_key else 'MISSED'}")
        if args.baseline:
            dt = asyncio.run(datatable_open(big))
            print(f"baseline: plain DataTable with {args.samples:,} rows opens in {dt:.2f} s "
                  f"= {dt / res_big['launch']:.1f}x the review screen")
    return 0 if ok_launch and ok_key else 1


if __name__ == "__main__":
    sys.exit(main())
