"""Long imports that do not lock other writers out: the rows go into a staging table of their own
(`import_rows_<id>`) in short transactions, with a pause after each so that a waiting writer (a review
action, a synth round, the app) gets the lock in between; one last transaction publishes them all into
`samples` and drops the staging table. For the user it stays all or nothing: nothing is visible before the
publish; an import that is killed leaves only its staging table, which the next open of the project drops.
The book of imports (which are in progress, dropping the dead ones) belongs to the database: store.py.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import time
from collections.abc import Callable, Iterable

from tuitune.core.data.samples import Sample
from tuitune.core.data.store import (
    INSERT_COLUMNS,
    INSERT_MARKS,
    Store,
    abandon_import,
    now,
    process_started,
    row_of,
    staging_table,
)

CHUNK_ROWS = 5000  # rows per staging transaction (well under a second of lock on a slow machine)
# After each chunk the importer sleeps a little longer than SQLite's longest busy-handler sleep (100 ms), so a
# writer that is waiting gets the lock before the next chunk.
PAUSE_S = 0.12
PUBLISH_CACHE_KIB = -262144  # page cache for the publish, at most 256 MiB (SQLite allocates it as needed)
STAGE_ABOVE = CHUNK_ROWS  # imports up to this many rows are one plain transaction (shorter than one chunk)


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
            (str(source), pid, socket.gethostname(), process_started(pid), now()))
        import_id = cur.lastrowid
        table = staging_table(import_id)
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
            abandon_import(store, import_id)
        raise
