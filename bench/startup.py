"""Start-up speed: `tuitune --help` and the TUI's first paint, each in a fresh interpreter (5 runs, median).

Targets: --help < 1.5 s and first paint < 1.5 s (no heavy import on the start path).
Run: .venv/bin/python bench/startup.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time

FIRST_PAINT = r"""
import sys, time
t0 = float(sys.argv[1])
from tuitune.settings import load_settings
from tuitune.tui.app import make_app
app = make_app(load_settings(project=sys.argv[2]))
def painted():
    print(f"{time.time() - t0:.3f}")
    app.exit()
app.call_after_refresh(lambda: app.call_after_refresh(painted))
app.run(headless=True)
heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'trl', 'vllm', 'datasets'})
print("heavy imports:", heavy or "none")
"""


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    exe = [sys.executable, "-m", "tuitune.cli"]
    helps = [timed([*exe, "--help"]) for _ in range(5)]
    paints, heavy = [], ""
    with tempfile.TemporaryDirectory() as proj:
        for _ in range(5):
            out = subprocess.run([sys.executable, "-c", FIRST_PAINT, repr(time.time()), proj], check=True,
                                 capture_output=True, text=True).stdout.split("\n")
            paints.append(float(out[0]))
            heavy = out[1]
    h, p = statistics.median(helps), statistics.median(paints)
    print(f"tuitune --help : median {h:.2f} s over 5 runs (target < 1.5 s) -> {'OK' if h < 1.5 else 'SLOW'}")
    print(f"TUI first paint: median {p:.2f} s over 5 runs (target < 1.5 s) -> {'OK' if p < 1.5 else 'SLOW'}")
    print(heavy)


if __name__ == "__main__":
    main()
