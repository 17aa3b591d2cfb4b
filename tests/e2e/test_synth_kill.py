"""Kill test: `tuitune synth --n 40` (a real subprocess) against a slow endpoint is killed with SIGKILL
mid-round; the same command run again resumes: 40 unique samples in the end, none stored before the kill lost.

The endpoint is the fake OpenAI-compatible server (a real model would make the timing of the kill random)."""

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

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

TUITUNE = [sys.executable, "-m", "tuitune.cli"]


def test_kill_9_mid_round_then_resume(project):
    with Store.open(project) as st:
        st.set_task(description="Explain made-up words.")
        st.add_samples([Sample(f"Explain the word zorb{i}", f"Zorb{i} is a thing.", origin="seed") for i in range(3)])
    proc, url = fake.spawn("--mode", "ok", "--delay", "0.4")
    cmd = TUITUNE + ["--project", str(project), "synth", "--n", "40", "--base-url", url, "--model", "fake",
                     "--per-request", "2", "--concurrency", "2", "--timeout", "10"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        st = Store.open(project)
        deadline = time.monotonic() + 120
        while st.count(origin="synth") < 10:
            assert first.poll() is None, first.stdout.read().decode()
            assert time.monotonic() < deadline, "the round did not get going"
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()
        before = {s.id: s.key() for s in st.samples(origin="synth")}
        assert 10 <= len(before) < 40, "killed too late to test resuming"
        (killed,) = rounds.list_rounds(st)
        assert killed.status == "running"  # what a killed process leaves behind

        second = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=180)
        assert second.returncode == 0, second.stdout + second.stderr
        assert f"Resuming round {killed.id}" in second.stdout
    finally:
        proc.kill()
        proc.wait()
    after = st.samples(origin="synth")
    assert len(after) == 40
    assert len({s.key() for s in after}) == 40 and len({s.prompt_key() for s in after}) == 40
    assert all(s.key() == before[s.id] for s in after if s.id in before)  # stored text unchanged
    assert set(before) <= {s.id for s in after}, "a sample stored before the kill was lost"
    (r,) = rounds.list_rounds(st)  # resumed, not a second round
    assert r.id == killed.id and r.status == "finished" and r.counters["sessions"] == 2
    assert r.counters["stored"] == 40
    # what was lost in flight at the kill can only make "returned" larger than what it explains
    c = r.counters
    explained = c["stored"] + c["invalid"] + c["too_short"] + c["too_long"] + c["duplicates"] + c["surplus"]
    assert c["returned"] >= explained
    st.close()
