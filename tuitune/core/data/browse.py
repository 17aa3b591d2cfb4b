"""Fast read-side queries for browsing many samples (the review list): the ordered ids that match a filter,
one page of short rows by id, and a read-only connection for threads. No textual/rich here.

A list of 100,000 ids loads in tens of milliseconds, so a browser keeps the matching ids as a snapshot
(row index -> id) and fetches only the rows it shows, by id."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from tuitune.core.data.samples import STATUSES, Sample
from tuitune.core.data.store import SAMPLE_COLUMNS, Store, StoreError, _row_to_sample

PREVIEW_CHARS = 160  # how much of the instruction a list row carries


class BrowseError(ValueError):
    """An invalid browse filter."""


@dataclass(frozen=True)
class Filter:
    """What the review list shows. None means "any"; rating 0 means "not rated yet"."""

    status: str | None = None
    round_id: int | None = None
    rating: int | None = None
    search: str = ""

    def __post_init__(self):
        if self.status is not None and self.status not in STATUSES:
            raise BrowseError(f"unknown status {self.status!r}; use one of {', '.join(STATUSES)}")
        if self.rating is not None and not 0 <= self.rating <= 5:
            raise BrowseError(f"rating filter must be 0 (unrated) or 1-5, got {self.rating!r}")

    def matches(self, s: Sample) -> bool:
        """Whether `s` passes the filter, as `ids` would answer (SQLite's LIKE folds the case of ASCII letters
        only), so that a list can drop or take back one sample after a change without reloading."""
        if self.status is not None and s.status != self.status:
            return False
        if self.round_id is not None and s.round_id != self.round_id:
            return False
        if self.rating is not None and s.rating != (self.rating or None):
            return False
        needle = _fold_ascii(self.search.strip())
        return not needle or any(needle in _fold_ascii(text) for text in (s.instruction, s.input, s.output))

    def where(self) -> tuple[str, list]:
        clauses, args = [], []
        if self.status is not None:
            clauses.append("status = ?")
            args.append(self.status)
        if self.round_id is not None:
            clauses.append("round_id = ?")
            args.append(self.round_id)
        if self.rating == 0:
            clauses.append("rating IS NULL")
        elif self.rating is not None:
            clauses.append("rating = ?")
            args.append(self.rating)
        if self.search.strip():
            pattern = "%" + _escape_like(self.search.strip()) + "%"
            clauses.append("(instruction LIKE ? ESCAPE '\\' OR input LIKE ? ESCAPE '\\' OR output LIKE ? ESCAPE '\\')")
            args += [pattern] * 3
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


@dataclass(frozen=True)
class Row:
    """One line of the review list."""

    id: int
    status: str
    rating: int | None
    round_id: int | None
    origin: str
    preview: str  # the first PREVIEW_CHARS of the instruction, whitespace folded


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _fold_ascii(text: str) -> str:
    return text.translate(_ASCII_LOWER)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _conn(src: Store | sqlite3.Connection) -> sqlite3.Connection:
    return src.conn if isinstance(src, Store) else src


def open_reader(path: Path | str) -> sqlite3.Connection:
    """A read-only connection to a project database, usable from another thread (WAL: never blocks writers)."""
    path = Path(path)
    if not path.exists():
        raise BrowseError(f"{path} does not exist; open an existing project folder first.")
    uri = path.resolve().as_uri() + "?mode=ro"  # as_uri escapes spaces, '#' and '?' in folder names
    return sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)


def ids(src: Store | sqlite3.Connection, flt: Filter = Filter(), *, limit: int | None = None) -> list[int]:
    """Ids of the samples matching `flt`, in id order (the first `limit` of them if given: that is instant
    even when a search has to scan every text, as long as enough rows match early)."""
    where, args = flt.where()
    if limit is not None:
        where += " ORDER BY id LIMIT ?"
        args = [*args, limit]
    else:
        where += " ORDER BY id"
    # One row holding every id: SQLite builds it in C in a single step, so a loader thread does not hand the
    # GIL back and forth 100,000 times (one fetch per row) while the UI thread is busy.
    text = _conn(src).execute(f"SELECT group_concat(id) FROM (SELECT id FROM samples{where})",
                              args).fetchone()[0]
    out = list(map(int, text.split(","))) if text else []
    out.sort()  # already sorted in practice; timsort checks that in linear time
    return out


def rows(src: Store | sqlite3.Connection, sample_ids: list[int]) -> dict[int, Row]:
    """Short rows for these ids (missing ids, e.g. deleted meanwhile, are simply absent)."""
    if not sample_ids:
        return {}
    marks = ",".join("?" * len(sample_ids))
    cur = _conn(src).execute(
        f"SELECT id, status, rating, round_id, origin, substr(instruction, 1, {PREVIEW_CHARS}) "
        f"FROM samples WHERE id IN ({marks})", sample_ids)
    return {r[0]: Row(r[0], r[1], r[2], r[3], r[4], " ".join(r[5].split())) for r in cur}


def round_ids(src: Store | sqlite3.Connection) -> list[int]:
    """The rounds that have samples, ascending."""
    return [r[0] for r in _conn(src).execute(
        "SELECT DISTINCT round_id FROM samples WHERE round_id IS NOT NULL ORDER BY round_id")]


def status_counts(src: Store | sqlite3.Connection) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    counts.update(_conn(src).execute("SELECT status, COUNT(*) FROM samples GROUP BY status").fetchall())
    return counts


def sample(src: Store | sqlite3.Connection, sample_id: int) -> Sample:
    """The full sample, read through any connection (e.g. a reader in another thread)."""
    row = _conn(src).execute(f"SELECT {SAMPLE_COLUMNS} FROM samples WHERE id = ?", (sample_id,)).fetchone()
    if row is None:
        raise StoreError(f"No sample with id {sample_id}: it was deleted; reload the list.")
    return _row_to_sample(row)
