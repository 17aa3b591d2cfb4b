"""The project's SQLite database (WAL, foreign keys on, versioned schema).

Every write that a user would call "saved" is its own committed transaction, so killing the process
never loses committed work and never leaves a half-applied import (a long import stages its rows and
publishes them in one transaction: staging.py). A write that finds the database busy waits (reported once
through `on_wait`) instead of failing. The database also keeps the book of long imports (the `imports` table and
their staging tables): which are in progress, and dropping those whose process is gone; staging.py writes them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from tuitune.core.data.samples import KEPT_STATUSES, Sample

DB_NAME = "tuitune.db"
BUSY_STEP_S = 2.0  # how long one attempt waits for the write lock before the wait is reported
WAIT_LIMIT_S = 900.0  # how long a write waits in all (a long import publishing) before it gives up

# Each entry upgrades the schema by one version (PRAGMA user_version): an SQL script, or a function of the
# connection (run inside the migration's transaction). Append, never edit.
MIGRATIONS: list[str | Callable[[sqlite3.Connection], None]] = [
    """
    CREATE TABLE task (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        name TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT '',
        system_prompt TEXT NOT NULL DEFAULT '',
        tags TEXT NOT NULL DEFAULT '[]',           -- JSON list: language pair, domain, ...
        updated_at TEXT NOT NULL
    );
    CREATE TABLE rounds (
        id INTEGER PRIMARY KEY,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL DEFAULT 'running',     -- running / finished / failed
        requested INTEGER NOT NULL DEFAULT 0,
        params TEXT NOT NULL DEFAULT '{}',          -- JSON: teacher, temperature, mode, ...
        counters TEXT NOT NULL DEFAULT '{}',        -- JSON: requested, returned, unparseable, ...
        prompt TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE samples (
        id INTEGER PRIMARY KEY,
        instruction TEXT NOT NULL,
        input TEXT NOT NULL DEFAULT '',
        output TEXT NOT NULL,
        system TEXT NOT NULL DEFAULT '',
        history TEXT NOT NULL DEFAULT '[]',         -- JSON [[user, assistant], ...]
        status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'accepted', 'rejected', 'edited')),
        rating INTEGER CHECK (rating IS NULL OR rating BETWEEN 1 AND 5),
        reason TEXT NOT NULL DEFAULT '',
        origin TEXT NOT NULL CHECK (origin IN ('seed', 'synth', 'import', 'chat')),
        round_id INTEGER REFERENCES rounds(id) ON DELETE SET NULL,
        original TEXT,                              -- JSON of the text before the first edit
        key TEXT NOT NULL,                          -- normalised content hash (exact duplicates)
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX samples_status ON samples(status);
    CREATE INDEX samples_origin ON samples(origin);
    CREATE INDEX samples_round ON samples(round_id);
    CREATE INDEX samples_key ON samples(key);
    CREATE VIEW seeds AS SELECT * FROM samples WHERE origin = 'seed';
    CREATE TABLE reviews (
        id INTEGER PRIMARY KEY,
        sample_id INTEGER NOT NULL REFERENCES samples(id) ON DELETE CASCADE,
        action TEXT NOT NULL,                       -- accept / reject / edit / rate / reset
        reason TEXT NOT NULL DEFAULT '',
        before TEXT NOT NULL DEFAULT '{}',          -- JSON of the fields it changed, for undo
        after TEXT NOT NULL DEFAULT '{}',
        at TEXT NOT NULL
    );
    CREATE INDEX reviews_sample ON reviews(sample_id);
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        method TEXT NOT NULL,
        base_model TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'created',
        config TEXT NOT NULL DEFAULT '{}'
    );
    """,
    # 2: review actions remember the session that made them (undo is per session); long imports stage their
    # rows in a per-import table (import_rows_<id>) listed here, and publish them in one transaction.
    """
    ALTER TABLE reviews ADD COLUMN session TEXT NOT NULL DEFAULT '';
    CREATE INDEX reviews_session ON reviews(session, id);
    CREATE TABLE imports (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        proc_started REAL NOT NULL DEFAULT 0,      -- the importing process's start time (pid reuse)
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL DEFAULT 'staging',    -- staging / published / abandoned
        rows INTEGER NOT NULL DEFAULT 0            -- rows staged so far
    );
    """,
]

SAMPLE_COLUMNS = ("id, instruction, input, output, system, history, status, rating, reason, origin, round_id, "
                  "original, teacher, decided_by, created_at, updated_at")


class StoreError(Exception):
    """A problem with the project database, with what to do about it."""


def damaged(path: Path, error: sqlite3.Error) -> StoreError:
    """The error for a database SQLite cannot use: what it is and what to do."""
    text = str(error)
    if "locked" in text or "busy" in text:
        return StoreError(f"the project database {path} is locked by another process ({text}); wait for it to "
                          f"finish and try again")
    if "readonly" in text or "unable to open" in text:
        return StoreError(f"cannot write the project database {path} ({text}); check the permissions of the "
                          f"file and its folder")
    what = ("is not an SQLite database (overwritten or not a tuitune project file)" if "not a database" in text
            else f"is damaged ({text}; truncated or partly overwritten)")
    return StoreError(f"the project database {path} {what}. Restore it from a backup, or move it away with its "
                      f"-wal and -shm files (for example `mkdir {path.parent}/damaged && mv {path}* "
                      f"{path.parent}/damaged/`) to start an empty project in this folder.")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class Task:
    name: str = ""
    description: str = ""
    system_prompt: str = ""
    tags: list[str] = field(default_factory=list)


INSERT_COLUMNS = ("instruction, input, output, system, history, status, rating, reason, origin, round_id, original, "
                  "teacher, decided_by, key, created_at, updated_at")
INSERT_MARKS = ",".join("?" * 16)


def row_of(s: Sample, at: str) -> tuple:
    """The values of INSERT_COLUMNS for a new sample."""
    return (s.instruction, s.input, s.output, s.system, json.dumps([list(p) for p in s.history], ensure_ascii=False),
            s.status, s.rating, s.reason, s.origin, s.round_id,
            json.dumps(s.original, ensure_ascii=False) if s.original else None, s.teacher, s.decided_by, s.key(), at, at)


def default_session() -> str:
    """Who is reviewing: the user and the terminal session (the login shell's session id), so successive
    `tuitune review` commands in one terminal share a session, and another terminal or SSH login is another
    reviewer. TUITUNE_SESSION overrides it."""
    if os.environ.get("TUITUNE_SESSION"):
        return os.environ["TUITUNE_SESSION"]
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    sid = os.getsid(0) if hasattr(os, "getsid") else os.getpid()
    return f"{user}@{socket.gethostname()}:{sid}"


def _row_to_sample(row: sqlite3.Row | tuple) -> Sample:
    (id_, instruction, input_, output, system, history, status, rating, reason, origin, round_id, original,
     teacher, decided_by, created_at, updated_at) = tuple(row)
    return Sample(
        id=id_, instruction=instruction, input=input_, output=output, system=system,
        history=[tuple(p) for p in json.loads(history)], status=status, rating=rating, reason=reason,
        origin=origin, round_id=round_id, original=json.loads(original) if original else None,
        teacher=teacher, decided_by=decided_by, created_at=created_at, updated_at=updated_at,
    )


def _rekey(conn: sqlite3.Connection) -> None:
    """3: the duplicate key covers the system prompt and a preference pair's rejected answer (Sample.key); the
    key of a record with neither is unchanged."""
    rows = conn.execute("SELECT id, instruction, input, output, system, history, original FROM samples "
                        "WHERE system != '' OR original IS NOT NULL").fetchall()  # the columns of schema 3
    keys = [(Sample(instruction=i, input=x, output=o, system=sy, history=[tuple(p) for p in json.loads(h)],
                    original=json.loads(orig) if orig else None).key(), id_) for id_, i, x, o, sy, h, orig in rows]
    conn.executemany("UPDATE samples SET key = ? WHERE id = ?", keys)


MIGRATIONS.append(_rekey)

# 4: curation at scale. A sample remembers the teacher that wrote it and who decided its status (a human, or the
# judge through a bulk action); the judge's verdict on a sample (one per sample, the latest); the review actions of
# one bulk action share a `bulk` id (undone together); a round remembers its batch job (hosted or local).
MIGRATIONS.append("""
    ALTER TABLE samples ADD COLUMN teacher TEXT NOT NULL DEFAULT '';
    ALTER TABLE samples ADD COLUMN decided_by TEXT NOT NULL DEFAULT '';
    ALTER TABLE reviews ADD COLUMN bulk INTEGER;
    ALTER TABLE rounds ADD COLUMN batch TEXT NOT NULL DEFAULT '{}';
    CREATE TABLE judgments (
        sample_id INTEGER PRIMARY KEY REFERENCES samples(id) ON DELETE CASCADE,
        score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
        critique TEXT NOT NULL DEFAULT '',
        lesson TEXT NOT NULL DEFAULT '',            -- the lesson it breaks, if any
        judge TEXT NOT NULL,                        -- the judge's teacher name and model
        rubric TEXT NOT NULL,                       -- the rubric template's name and content hash
        at TEXT NOT NULL
    );
    CREATE INDEX judgments_score ON judgments(score);
""")


# ---- the book of long imports (staging.py stages and publishes them) ---------------------------------------

def staging_table(import_id: int) -> str:
    """The table an import stages its rows in until it publishes them."""
    return f"import_rows_{int(import_id)}"


def process_started(pid: int) -> float:
    """The process's start time (0 when it is gone): tells a live importer from a recycled pid."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return 0.0


def abandon_import(store: Store, import_id: int) -> None:
    """Drop an import's staged rows and mark it abandoned (nothing of it was ever visible)."""
    with store.transaction():
        store.conn.execute(f"DROP TABLE IF EXISTS {staging_table(import_id)}")
        store.conn.execute("UPDATE imports SET status = 'abandoned', finished_at = ? WHERE id = ?",
                           (now(), import_id))


def _alive(pid: int, host: str, proc_started: float) -> bool:
    import socket

    if host != socket.gethostname():
        return True  # another machine's import (a shared folder): cannot tell, leave it
    started = process_started(pid)
    return started > 0 and (not proc_started or abs(started - proc_started) < 1.0)


def _staging(store: Store) -> list[tuple]:
    if not store.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'imports'").fetchone():
        return []
    return store.conn.execute(
        "SELECT id, source, pid, host, proc_started, rows FROM imports WHERE status = 'staging' ORDER BY id").fetchall()


def running_imports(store: Store) -> list[tuple[str, int]]:
    """(source, rows staged so far) of the imports in progress (by live processes)."""
    return [(source, rows) for _, source, pid, host, started, rows in _staging(store) if _alive(pid, host, started)]


def clean_abandoned(store: Store) -> int:
    """Drop the staging rows of imports whose process is gone (killed mid-import). Returns how many."""
    dead = [row[0] for row in _staging(store) if not _alive(*row[2:5])]
    for import_id in dead:
        abandon_import(store, import_id)
    return len(dead)


class Store:
    """A project's database. Open with `Store.open(project_dir)` (creates it) or `Store(path)`."""

    def __init__(self, path: Path | str, *, session: str | None = None,
                 on_wait: Callable[[str], None] | None = None):
        self.path = Path(path)
        self.session = session or default_session()  # stored with each review action: undo is per session
        self.on_wait = on_wait  # told once when a write has to wait for another process (e.g. an import)
        self.wait_limit = WAIT_LIMIT_S
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a folder, not a tuitune database. Move it away (for example "
                             f"`mv {self.path} {self.path}.moved`), then run again to start an empty project.")
        try:
            self.conn = sqlite3.connect(self.path, timeout=BUSY_STEP_S, isolation_level=None,
                                        check_same_thread=False)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the project database {self.path} ({e}); check that its folder exists "
                             f"and is writable") from None
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
            clean_abandoned(self)
        except sqlite3.DatabaseError as e:
            self.conn.close()
            raise damaged(self.path, e) from None

    @classmethod
    def open(cls, project: Path | str, *, create: bool = True, **kw) -> Store:
        project = Path(project)
        db = project / DB_NAME
        if not db.exists() and not create:
            raise StoreError(f"No tuitune project in {project} (no {DB_NAME}). Run `tuitune init` there first.")
        project.mkdir(parents=True, exist_ok=True)
        return cls(db, **kw)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- schema -------------------------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        version = self.schema_version
        if version > len(MIGRATIONS):
            raise StoreError(f"{self.path} was written by a newer tuitune (schema {version}); upgrade tuitune.")
        for target, script in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.transaction():
                if callable(script):
                    script(self.conn)
                for stmt in script.split(";") if isinstance(script, str) else ():
                    if stmt.strip():
                        self.conn.execute(stmt)
                self.conn.execute(f"PRAGMA user_version = {target}")
        if version == 0:
            with self.transaction():
                self.conn.execute("INSERT OR IGNORE INTO task (id, updated_at) VALUES (1, ?)", (now(),))

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit: all of it is committed, or none of it (also when the process is killed)."""
        if self.conn.in_transaction:  # nested: join the outer one
            yield self.conn
            return
        self._begin()
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def _begin(self) -> None:
        """BEGIN IMMEDIATE, waiting as long as another process (a long import publishing, a synth round)
        holds the write lock: the wait is reported once (on_wait), and only after wait_limit does it fail."""
        started = None
        while True:
            try:
                self.conn.execute("BEGIN IMMEDIATE")  # waits up to BUSY_STEP_S (the busy timeout)
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                if started is None:
                    started = time.monotonic() - BUSY_STEP_S
                    if self.on_wait:
                        self.on_wait(f"Waiting for {self.busy_with()} to finish; your change is saved then.")
                elif time.monotonic() - started > self.wait_limit:
                    raise StoreError(f"the project database stayed busy for {time.monotonic() - started:.0f} s "
                                     f"({self.busy_with()}); nothing was saved: try again when it is done") from None

    def busy_with(self) -> str:
        """Who probably holds the write lock, in words (an import in progress, or another tuitune process)."""
        imports = running_imports(self)
        if imports:
            source, rows = imports[0]
            return f"the import of {Path(source).name} ({rows} records staged so far)"
        return "another tuitune process writing to this project"

    # ---- task ---------------------------------------------------------------------------------
    def get_task(self) -> Task:
        row = self.conn.execute("SELECT name, description, system_prompt, tags FROM task WHERE id = 1").fetchone()
        return Task(row[0], row[1], row[2], json.loads(row[3]))

    def set_task(self, **fields) -> Task:
        task = self.get_task()
        for k, v in fields.items():
            if v is not None:
                setattr(task, k, v)
        with self.transaction():
            self.conn.execute(
                "UPDATE task SET name=?, description=?, system_prompt=?, tags=?, updated_at=? WHERE id=1",
                (task.name, task.description, task.system_prompt, json.dumps(task.tags, ensure_ascii=False), now()))
        return task

    # ---- samples ------------------------------------------------------------------------------
    def _insert(self, s: Sample, at: str) -> int:
        cur = self.conn.execute(f"INSERT INTO samples ({INSERT_COLUMNS}) VALUES ({INSERT_MARKS})", row_of(s, at))
        return cur.lastrowid

    def add_sample(self, sample: Sample) -> Sample:
        """Insert one sample and commit it at once."""
        at = now()
        with self.transaction():
            sid = self._insert(sample, at)
        return sample.with_(id=sid, created_at=at, updated_at=at)

    def add_samples(self, samples: Iterable[Sample]) -> int:
        """Insert many samples in ONE transaction: all are stored, or (on any error or kill) none."""
        at = now()
        n = 0
        with self.transaction():
            for s in samples:
                self._insert(s, at)
                n += 1
        return n

    def get_sample(self, sample_id: int) -> Sample:
        row = self.conn.execute(f"SELECT {SAMPLE_COLUMNS} FROM samples WHERE id = ?", (sample_id,)).fetchone()
        if row is None:
            raise StoreError(f"No sample with id {sample_id}.")
        return _row_to_sample(row)

    def update_sample(self, sample: Sample) -> None:
        with self.transaction():
            self.conn.execute(
                "UPDATE samples SET instruction=?, input=?, output=?, system=?, history=?, status=?, rating=?, "
                "reason=?, original=?, decided_by=?, key=?, updated_at=? WHERE id=?",
                (sample.instruction, sample.input, sample.output, sample.system,
                 json.dumps([list(p) for p in sample.history], ensure_ascii=False), sample.status, sample.rating,
                 sample.reason, json.dumps(sample.original, ensure_ascii=False) if sample.original else None,
                 sample.decided_by, sample.key(), now(), sample.id))

    def samples(self, *, status: str | Iterable[str] | None = None, origin: str | Iterable[str] | None = None,
                round_id: int | None = None, limit: int | None = None, offset: int = 0) -> list[Sample]:
        where, args = self._filters(status=status, origin=origin, round_id=round_id)
        sql = f"SELECT {SAMPLE_COLUMNS} FROM samples{where} ORDER BY id"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [limit, offset]
        return [_row_to_sample(r) for r in self.conn.execute(sql, args)]

    def count(self, *, status=None, origin=None, round_id=None) -> int:
        where, args = self._filters(status=status, origin=origin, round_id=round_id)
        return self.conn.execute(f"SELECT COUNT(*) FROM samples{where}", args).fetchone()[0]

    @staticmethod
    def _filters(*, status, origin, round_id) -> tuple[str, list]:
        clauses, args = [], []
        for col, val in (("status", status), ("origin", origin)):
            if val is None:
                continue
            vals = [val] if isinstance(val, str) else list(val)
            clauses.append(f"{col} IN ({','.join('?' * len(vals))})")
            args += vals
        if round_id is not None:
            clauses.append("round_id = ?")
            args.append(round_id)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), args

    def training_samples(self, *, include_seeds: bool = True) -> list[Sample]:
        """What training and export use by default: seeds + accepted (and edited) samples."""
        sql = f"SELECT {SAMPLE_COLUMNS} FROM samples WHERE (status IN ({','.join('?' * len(KEPT_STATUSES))})"
        args: list = list(KEPT_STATUSES)
        sql += " OR origin = 'seed')" if include_seeds else ") AND origin != 'seed'"
        return [_row_to_sample(r) for r in self.conn.execute(sql + " ORDER BY id", args)]

    def existing_keys(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT key FROM samples")}

    def stats(self) -> dict:
        by_status = dict(self.conn.execute("SELECT status, COUNT(*) FROM samples GROUP BY status").fetchall())
        by_origin = dict(self.conn.execute("SELECT origin, COUNT(*) FROM samples GROUP BY origin").fetchall())
        total = sum(by_status.values())
        dupes = self.conn.execute(
            "SELECT COALESCE(SUM(c - 1), 0) FROM (SELECT COUNT(*) c FROM samples GROUP BY key HAVING c > 1)"
        ).fetchone()[0]
        rounds = self.conn.execute("SELECT COUNT(*) FROM rounds").fetchone()[0]
        return {"total": total, "by_status": by_status, "by_origin": by_origin, "duplicates": dupes,
                "rounds": rounds}

    def remove_duplicates(self) -> int:
        """Delete exact (normalised) duplicates, keeping the oldest of each group. Returns how many went."""
        with self.transaction():
            cur = self.conn.execute(
                "DELETE FROM samples WHERE id NOT IN (SELECT MIN(id) FROM samples GROUP BY key)")
        return cur.rowcount

    # ---- reviews ------------------------------------------------------------------------------
    def log_review(self, sample_id: int, action: str, *, reason: str = "", before: dict | None = None,
                   after: dict | None = None, bulk: int | None = None) -> None:
        self.conn.execute(
            "INSERT INTO reviews (sample_id, action, reason, before, after, at, session, bulk) VALUES (?,?,?,?,?,?,?,?)",
            (sample_id, action, reason, json.dumps(before or {}, ensure_ascii=False),
             json.dumps(after or {}, ensure_ascii=False), now(), self.session, bulk))
