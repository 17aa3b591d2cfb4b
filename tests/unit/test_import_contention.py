"""A long import no longer locks everyone else out: a real 60k-record import runs in a subprocess while
`tuitune review --accept` saves at once (before: it waited for the whole import, and past 30 s failed with
`database is locked`); nothing of the import is visible before it publishes; kill -9 mid-import leaves
nothing visible and the next open drops the staging rows; a write that must wait says so."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from tuitune.core.data import review
from tuitune.core.data.samples import Sample
from tuitune.core.data.store import Store, process_started

pytestmark = pytest.mark.timeout(180)

TUITUNE = [sys.executable, "-m", "tuitune.cli"]
N = 60_000


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("big") / "big.jsonl"
    with p.open("w") as f:
        for i in range(N):
            f.write(json.dumps({"instruction": f"Question {i} about topic {i * 7919 % 104729}",
                                "output": f"Answer {i}. " * 4}) + "\n")
    return p


def _writer_busy(db) -> bool:
    conn = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        conn.close()


def _start_import(project, big_file):
    return subprocess.Popen(TUITUNE + ["--project", str(project), "import", str(big_file)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_writes(proc, db, timeout=90):
    deadline = time.monotonic() + timeout
    while not _writer_busy(db):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the import never started writing"
        time.sleep(0.02)


def test_review_accept_saves_during_a_long_import(project, big_file):
    with Store.open(project) as st:
        sid = st.add_sample(Sample("keep me?", "yes", origin="synth")).id
    db = project / "tuitune.db"
    imp = _start_import(project, big_file)
    try:
        _wait_for_writes(imp, db)
        t0 = time.monotonic()
        res = subprocess.run(TUITUNE + ["--project", str(project), "review", "--accept", str(sid)],
                             capture_output=True, text=True, timeout=120, check=False)
        took = time.monotonic() - t0
        assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
        with Store.open(project) as st:
            assert st.get_sample(sid).status == "accepted"
            visible = st.count()
        running = imp.poll() is None
        _out, err = imp.communicate(timeout=150)
    finally:
        if imp.poll() is None:
            imp.kill()
            imp.wait()
    assert imp.returncode == 0, err
    assert running, "the import ended before the review: the test proves nothing"
    assert visible == 1, "rows of an unfinished import were visible"
    assert took < 15, f"review --accept waited {took:.1f} s for the import"
    with Store.open(project) as st:
        assert st.count() == N + 1 and st.get_sample(sid).status == "accepted"
        assert not st.conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'import_rows_%'").fetchall()


def test_kill_9_mid_import_leaves_nothing_and_is_cleaned(project, big_file):
    with Store.open(project) as st:
        st.add_sample(Sample("before", "the import", origin="seed"))
    imp = _start_import(project, big_file)
    try:
        with Store.open(project) as st:
            deadline = time.monotonic() + 90
            while not st.conn.execute("SELECT 1 FROM imports WHERE rows > 0").fetchone():
                assert imp.poll() is None and time.monotonic() < deadline, "no staging seen"
                time.sleep(0.05)
        imp.send_signal(signal.SIGKILL)
        imp.wait()
    finally:
        if imp.poll() is None:
            imp.kill()
    conn = sqlite3.connect(project / "tuitune.db")
    assert conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 1
    assert conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'import_rows_%'").fetchall()
    conn.close()
    with Store.open(project) as st:  # the next open drops the dead import's rows
        assert st.count() == 1
        assert not st.conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'import_rows_%'").fetchall()
        assert st.conn.execute("SELECT status FROM imports").fetchone()[0] == "abandoned"


def test_a_waiting_write_says_so_and_is_saved(project):
    with Store.open(project) as st:
        sid = st.add_sample(Sample("q", "a", origin="synth")).id
        st.conn.execute("INSERT INTO imports (source, pid, host, proc_started, started_at, rows) "
                        "VALUES ('/data/big.jsonl', ?, ?, ?, 'now', 1234)",
                        (os.getpid(), __import__("socket").gethostname(), process_started(os.getpid())))
    holder = sqlite3.connect(project / "tuitune.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # what a publishing import does: hold the write lock
    messages = []
    writer = Store.open(project, on_wait=messages.append)
    threading.Timer(3.5, lambda: holder.execute("COMMIT")).start()
    t0 = time.monotonic()
    review.accept(writer, sid)
    assert time.monotonic() - t0 >= 3
    assert writer.get_sample(sid).status == "accepted"
    assert messages == [("Waiting for the import of big.jsonl (1234 records staged so far) to finish; your change "
                        "is saved then.")]
    writer.close()
    holder.close()
