"""Helpers of the e2e training tests: the real CLI in a subprocess, and waiting for a run's event."""

from __future__ import annotations

import subprocess
import sys
import time

from tuitune.core.training import jobs


def cli(project, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "tuitune.cli", "--project", str(project), *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


def wait_for(d, pred, timeout=600):
    """The newest event of run folder `d` that `pred` accepts; fails when the run stops running first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        hit = [e for e in jobs.read_events(d)[0] if pred(e)]
        if hit:
            return hit[-1]
        assert jobs.run_info(d).status == "running", (d / "worker.log").read_text()[-3000:]
        time.sleep(0.5)
    raise AssertionError(f"timed out; events: {jobs.read_events(d)[0]}")
