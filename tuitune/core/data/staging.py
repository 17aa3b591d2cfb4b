"""Long imports that do not lock other writers out: the rows go into a staging table of their own
(`import_rows_<id>`) in short transactions, with a pause after each so that a waiting writer (a review
action, a synth round, the app) gets the lock in between; one last transaction publishes them all into
`samples` and drops the staging table. For the user it stays all or nothing: nothing is visible before the
publish; an import that is killed leaves only its staging table, which the next open of the project drops.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import time
from collections.abc import Callable, Iterable

from tuitune.core.data.samples import Sample
from tuitune.core.data.store import INSERT_COLUMNS, INSERT_MARKS, Store, now, row_of

CHUNK_ROWS = 5000  # rows per staging transaction (well under a second of lock on a slow machine)
# After each chunk the importer sleeps a little longer than SQLite's longest busy-handler sleep (100 ms), so a
# writer that is waiting gets the lock before the next chunk.
PAUSE_S = 0.12
PUBLISH_CACHE_KIB = -262144  # page cache for the publish, at most 256 MiB (SQLite allocates it as needed)
STAGE_ABOVE = CHUNK_ROWS  # imports up to this many rows are one plain transaction (shorter than one chunk)


def _table(import_id: int) -> str:
    return f"import_rows_{int(import_id)}"


def _proc_started(pid: int) -> float:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return 0.0


def add_samples_staged(store: Store, samples: Iterable[Sample], *, source: str,
                       on_progress: Callable[[int], None] | None = None) -> int:
    """Store samples all-or-nothing without holding the write lock for more than one chunk at a time (then one
    publish). Returns how many were stored."""
    samples = list(samples)
    if len(samples) <= STAGE_ABOVE:
        return store.add_samples(samples)
    pid = os.getpid()
    with store.transaction():
        cur = store.conn.execute(
            "INSERT INTO imports (source, pid, host, proc_started, started_at) VALUES (?,?,?,?,?)",
            (str(source), pid, socket.gethostname(), _proc_started(pid), now()))
        import_id = cur.lastrowid
        table = _table(import_id)
        store.conn.execute(f"CREATE TABLE {table} AS SELECT {INSERT_COLUMNS} FROM samples WHERE 0")
    try:
        at = now()
        done = 0
        it = iter(samples)
        while chunk := list(itertools.islice(it, CHUNK_ROWS)):
            rows = [row_of(s, at) for s in chunk]  # hashing and JSON happen outside the lock
            with store.transaction():
                store.conn.executemany(f"INSERT INTO {table} ({INSERT_COLUMNS}) VALUES ({INSERT_MARKS})", rows)
                done += len(rows)
                store.conn.execute("UPDATE imports SET rows = ? WHERE id = ?", (done, import_id))
            if on_progress:
                on_progress(done)
            time.sleep(PAUSE_S)
        cache = store.conn.execute("PRAGMA cache_size").fetchone()[0]
        store.conn.execute(f"PRAGMA cache_size = {PUBLISH_CACHE_KIB}")  # index updates in memory: ~1.5x faster
        try:
            with store.transaction():  # publish: the only moment the rows become visible, all at once
                store.conn.execute(f"INSERT INTO samples ({INSERT_COLUMNS}) SELECT {INSERT_COLUMNS} FROM {table} "
                                   f"ORDER BY rowid")
                store.conn.execute(f"DROP TABLE {table}")
                store.conn.execute("UPDATE imports SET status = 'published', finished_at = ? WHERE id = ?",
                                   (now(), import_id))
        finally:
            store.conn.execute(f"PRAGMA cache_size = {int(cache)}")
        return done
    except BaseException:
        with contextlib.suppress(Exception):
            _abandon(store, import_id)
        raise


def _abandon(store: Store, import_id: int) -> None:
    with store.transaction():
        store.conn.execute(f"DROP TABLE IF EXISTS {_table(import_id)}")
        store.conn.execute("UPDATE imports SET status = 'abandoned', finished_at = ? WHERE id = ?",
                           (now(), import_id))


def _alive(pid: int, host: str, proc_started: float) -> bool:
    if host != socket.gethostname():
        return True  # another machine's import (a shared folder): cannot tell, leave it
    started = _proc_started(pid)
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
        _abandon(store, import_id)
    return len(dead)
