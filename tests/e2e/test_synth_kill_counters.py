"""kill -9 mid-round: the counters the killed process left add up (requests == responses + failed +
cancelled: requests in flight at the kill are saved as cancelled), and again after the resumed round."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import fake_teacher as fake  # tests/fake_teacher.py (tests/ is on pytest's pythonpath)
import pytest

from tuitune.core.data.samples import Sample
from tuitune.core.data.store import Store
from tuitune.core.synth import rounds

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

TUITUNE = [sys.executable, "-m", "tuitune.cli"]


def _adds_up(c: dict) -> bool:
    return c["requests"] == c["responses"] + c["failed_requests"] + c["cancelled_requests"]


def test_counters_add_up_after_kill_9_and_after_resume(project):
    with Store.open(project) as st:
        st.set_task(description="Explain made-up words.")
        st.add_samples([Sample(f"Explain the word zorb{i}", f"Zorb{i} is a thing.", origin="seed") for i in range(3)])
    proc, url = fake.spawn("--mode", "hostile", "--delay", "0.5")
    cmd = TUITUNE + ["--project", str(project), "synth", "--n", "30", "--base-url", url, "--model", "fake",
                     "--per-request", "1", "--concurrency", "4", "--timeout", "10", "--retries", "0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        st = Store.open(project)
        deadline = time.monotonic() + 90
        while st.count(origin="synth") < 6:
            assert first.poll() is None, first.stdout.read().decode()
            assert time.monotonic() < deadline, "the round did not get going"
            time.sleep(0.05)
        time.sleep(0.2)  # mid-flight: requests were sent and not answered yet
        first.send_signal(signal.SIGKILL)
        first.wait()
        (killed,) = rounds.list_rounds(st)
        assert killed.status == "running"
        c = killed.counters
        assert _adds_up(c), c
        assert c["cancelled_requests"] >= 1, "nothing was in flight at the kill: the test proves nothing"
        second = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=120)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "Traceback" not in second.stderr
    finally:
        proc.kill()
        proc.wait()
    (r,) = rounds.list_rounds(st)
    assert r.status == "finished" and r.counters["sessions"] == 2 and r.counters["stored"] == 30
    assert _adds_up(r.counters), r.counters
    assert r.counters["cancelled_requests"] >= c["cancelled_requests"]
    st.close()
