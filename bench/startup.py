"""Start-up speed: `tuitune --help` and the TUI's first paint, each in a fresh interpreter (5 runs, median).

Targets: --help < 1.5 s, first paint < 1 s (no heavy import on the start path). The first paint is split into
where it goes: importing the settings (pydantic-settings), importing the app (Textual), make_app (the project's
database and the engine pool), and Textual from run() to the first painted frame (CSS, the main screen and
its footer). Times grow with the machine's load, which is printed.
Run: .venv/bin/python bench/startup.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

FIRST_PAINT = r"""
import sys, time
t0 = float(sys.argv[1])
t1 = time.time()
from tuitune.settings import load_settings
t2 = time.time()
from tuitune.tui.app import make_app
t3 = time.time()
app = make_app(load_settings(project=sys.argv[2]))
t4 = time.time()
def painted():
    t5 = time.time()
    print(f"{t5 - t0:.3f} {t1 - t0:.3f} {t2 - t1:.3f} {t3 - t2:.3f} {t4 - t3:.3f} {t5 - t4:.3f}")
    app.exit()
app.call_after_refresh(lambda: app.call_after_refresh(painted))
app.run(headless=True)
heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'trl', 'vllm', 'datasets'})
print("heavy imports:", heavy or "none")
"""
PARTS = ("interpreter start", "import settings", "import the app", "make_app", "run -> first frame")


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    exe = [sys.executable, "-m", "tuitune.cli"]
    helps = [timed([*exe, "--help"]) for _ in range(5)]
    paints, heavy = [], ""
    with tempfile.TemporaryDirectory() as proj:
        for _ in range(5):
            out = subprocess.run([sys.executable, "-c", FIRST_PAINT, repr(time.time()), proj], check=True,
                                 capture_output=True, text=True).stdout.split("\n")
            paints.append([float(x) for x in out[0].split()])
            heavy = out[1]
    h, p = statistics.median(helps), statistics.median(x[0] for x in paints)
    parts = [statistics.median(x[i] for x in paints) for i in range(1, 6)]
    print(f"tuitune --help : median {h:.2f} s over 5 runs (target < 1.5 s) -> {'OK' if h < 1.5 else 'SLOW'}")
    print(f"TUI first paint: median {p:.2f} s over 5 runs (target < 1 s) -> {'OK' if p < 1.0 else 'SLOW'}")
    print("  of which (medians): " + ", ".join(f"{name} {t:.2f} s" for name, t in zip(PARTS, parts)))
    print(heavy)


if __name__ == "__main__":
    main()
