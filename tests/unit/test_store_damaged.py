"""A project database that is random bytes, truncated or a folder: every command and the app's start say
what it is and what to do (restore, move it away), exit 2, no traceback, and the file is left as it was."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from tuitune.core.data.samples import Sample
from tuitune.core.data.store import Store, StoreError

pytestmark = pytest.mark.timeout(120)

TUITUNE = [sys.executable, "-m", "tuitune.cli"]
COMMANDS = [["stats"], ["review", "--list"], ["review", "--accept", "1"], ["synth", "--rounds"], ["lessons"],
            ["task"], ["dedup"], ["export", "-o", "out.jsonl"], ["import", "seeds.jsonl"], []]  # [] = the TUI


def _make(kind: str, project):
    db = project / "tuitune.db"
    if kind == "random":
        db.write_bytes(os.urandom(64 * 1024))
    elif kind == "directory":
        db.mkdir()
    elif kind == "truncated":
        with Store.open(project) as st:
            st.add_samples([Sample(f"question {i} " * 20, f"answer {i} " * 20) for i in range(3000)])
            st.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        data = db.read_bytes()
        db.write_bytes(data[: len(data) // 2])
    return db


def _digest(db):
    return "dir" if db.is_dir() else hashlib.sha256(db.read_bytes()).hexdigest()


@pytest.mark.parametrize("kind", ["random", "truncated", "directory"])
def test_store_open_raises_store_error(project, kind):
    db = _make(kind, project)
    with pytest.raises(StoreError) as exc:
        Store.open(project)
    msg = str(exc.value)
    assert str(db) in msg and "move it away" in msg.lower().replace("move it away", "move it away")


@pytest.mark.parametrize("kind", ["random", "truncated", "directory"])
def test_every_command_exits_2_with_advice(tmp_path, project, kind):
    db = _make(kind, project)
    (project / "seeds.jsonl").write_text('{"instruction": "q", "output": "a"}\n')
    before = _digest(db)
    for args in COMMANDS:
        res = subprocess.run(TUITUNE + ["--project", str(project), *args], capture_output=True, text=True,
                             timeout=60, check=False, cwd=project, stdin=subprocess.DEVNULL)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert "Traceback" not in res.stderr, (args, res.stderr)
        assert str(db) in res.stderr and "Move it away" in res.stderr.replace("move it away", "Move it away"), \
            (args, res.stderr)
        if kind != "directory":
            assert "Restore it from a backup" in res.stderr, (args, res.stderr)
    assert _digest(db) == before, "the damaged file was changed"
