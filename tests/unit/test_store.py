"""The project database: WAL, foreign keys, versioned schema, committed writes survive kill -9."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tuitune.core.data.samples import Sample
from tuitune.core.data.store import MIGRATIONS, Store, StoreError


def test_pragmas_and_schema_version(store):
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.schema_version == len(MIGRATIONS)
    tables = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table','view')")}
    assert {"task", "samples", "seeds", "reviews", "rounds", "runs"} <= tables


def test_reopen_keeps_data_and_does_not_migrate_twice(project):
    with Store.open(project) as s:
        s.set_task(name="k8s", description="EN->ZH", tags=["en-zh"])
        s.add_sample(Sample(instruction="i", output="o", origin="seed", status="accepted"))
    with Store.open(project) as s:
        assert s.get_task().tags == ["en-zh"] and s.count(origin="seed") == 1


def test_newer_schema_is_refused(project):
    Store.open(project).close()
    con = sqlite3.connect(project / "tuitune.db")
    con.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    con.close()
    with pytest.raises(StoreError, match="newer tuitune"):
        Store.open(project)


def test_open_without_create_says_to_init(tmp_path):
    with pytest.raises(StoreError, match="tuitune init"):
        Store.open(tmp_path / "nothing", create=False)


def test_constraints_reject_bad_status_and_rating(store):
    with pytest.raises(sqlite3.IntegrityError):
        store.add_sample(Sample(instruction="i", output="o", status="maybe"))
    with pytest.raises(sqlite3.IntegrityError):
        store.add_sample(Sample(instruction="i", output="o", rating=9))
    assert store.count() == 0


def test_add_samples_is_all_or_nothing(store):
    good = [Sample(instruction=f"i{n}", output="o") for n in range(5)]
    with pytest.raises(sqlite3.IntegrityError):
        store.add_samples([*good, Sample(instruction="x", output="o", origin="elsewhere")])
    assert store.count() == 0


def test_training_samples_are_seeds_plus_kept(store):
    store.add_samples([Sample(instruction="s", output="o", origin="seed", status="accepted"),
                       Sample(instruction="a", output="o", origin="synth", status="accepted"),
                       Sample(instruction="e", output="o", origin="synth", status="edited"),
                       Sample(instruction="p", output="o", origin="synth", status="pending"),
                       Sample(instruction="r", output="o", origin="synth", status="rejected")])
    assert [s.instruction for s in store.training_samples()] == ["s", "a", "e"]
    assert store.stats()["by_status"] == {"accepted": 2, "edited": 1, "pending": 1, "rejected": 1}


def test_kill_9_during_import_leaves_db_consistent(tmp_path):
    """A big import is one transaction: after kill -9 the database holds all of it or none of it."""
    proj = tmp_path / "proj"
    subprocess.run([sys.executable, "-m", "tuitune.cli", "--project", str(proj), "init"], check=True,
                   capture_output=True)
    with Store.open(proj) as s:
        s.add_sample(Sample(instruction="before", output="kept", origin="seed", status="accepted"))
    n = 150_000
    big = tmp_path / "big.jsonl"
    big.write_text("".join(json.dumps({"instruction": f"q{i}", "input": "x" * 50, "output": f"a{i}"}) + "\n"
                           for i in range(n)), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "tuitune.cli", "--project", str(proj), "import", str(big)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # wait until the import is writing (the WAL grows), then kill it hard
    wal = proj / "tuitune.db-wal"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if wal.exists() and wal.stat().st_size > 2_000_000:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "import finished before it could be killed; make the file bigger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with Store.open(proj) as s:
        assert s.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert s.count() in (1, n + 1)
        assert s.samples(origin="seed")[0].output == "kept"
