"""Fast read-side queries for browsing many samples (the review list): the ordered ids that match a filter
(by status, round, rating, text and the judge's score; in id order or worst score first), one page of short rows
by id, and a read-only connection for threads. No textual/rich here.

A list of 100,000 ids loads in tens of milliseconds, so a browser keeps the matching ids as a snapshot
(row index -> id) and fetches only the rows it shows, by id."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from tuitune.core.curation.judgments import Judgment
from tuitune.core.data.samples import STATUSES, Sample
from tuitune.core.data.store import SAMPLE_COLUMNS, Store, StoreError, _row_to_sample

PREVIEW_CHARS = 160  # how much of the instruction a list row carries
SORTS = ("id", "score")  # id order, or the judge's score worst first (unscored last), then id
UNSCORED_RANK = 6  # where an unscored sample sorts under "score": after 5
_ID_BITS = 40  # a sort key is rank << 40 | id: one integer per row, sorted in C


class BrowseError(ValueError):
    """An invalid browse filter."""


@dataclass(frozen=True)
class Filter:
    """What the review list shows. None means "any"; rating 0 means "not rated yet". score: the judge's score,
    1-5 exactly, -N for "N or lower" (-2: 1 or 2), 0 for "not scored yet". sort: "id" or "score"."""

    status: str | None = None
    round_id: int | None = None
    rating: int | None = None
    search: str = ""
    score: int | None = None
    sort: str = "id"

    def __post_init__(self):
        if self.status is not None and self.status not in STATUSES:
            raise BrowseError(f"unknown status {self.status!r}; use one of {', '.join(STATUSES)}")
        if self.rating is not None and not 0 <= self.rating <= 5:
            raise BrowseError(f"rating filter must be 0 (unrated) or 1-5, got {self.rating!r}")
        if self.score is not None and not -5 <= self.score <= 5:
            raise BrowseError(f"score filter must be 0 (unscored), 1-5 or -1..-5 (that or lower), got {self.score!r}")
        if self.sort not in SORTS:
            raise BrowseError(f"unknown sort {self.sort!r}; use one of {', '.join(SORTS)}")

    @property
    def joins_judgments(self) -> bool:
        return self.score is not None or self.sort == "score"

    def matches(self, s: Sample, score: int | None = None) -> bool:
        """Whether `s` (whose judge's score is `score`, None if unscored) passes the filter, as `ids` would
        answer (SQLite's LIKE folds the case of ASCII letters only), so that a list can drop or take back one
        sample after a change without reloading."""
        if self.status is not None and s.status != self.status:
            return False
        if self.score is not None and not score_matches(self.score, score):
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
        if self.score == 0:
            clauses.append("j.score IS NULL")
        elif self.score is not None and self.score < 0:
            clauses.append("j.score <= ?")
            args.append(-self.score)
        elif self.score is not None:
            clauses.append("j.score = ?")
            args.append(self.score)
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
    score: int | None = None  # the judge's score (None: not scored)


def score_matches(wanted: int, score: int | None) -> bool:
    """The score filter's rule (see Filter.score) for one sample."""
    if wanted == 0:
        return score is None
    if score is None:
        return False
    return score <= -wanted if wanted < 0 else score == wanted


def describe_score(wanted: int | None) -> str:
    if wanted is None:
        return "any score"
    if wanted == 0:
        return "unscored"
    return f"score ≤ {-wanted}" if wanted < 0 else f"score {wanted}"


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
    """Ids of the samples matching `flt`, in its order (the first `limit` of them if given: that is instant
    even when a search has to scan every text, as long as enough rows match early)."""
    if flt.sort == "id":
        return sort_keys(src, flt, limit=limit)
    return ids_of(sort_keys(src, flt, limit=limit))


_ID_MASK = (1 << _ID_BITS) - 1


def ids_of(keys: list[int]) -> list[int]:
    """The ids behind sort keys of the "score" sort."""
    return [k & _ID_MASK for k in keys]


def key_of(sample_id: int, score: int | None, sort: str) -> int:
    """A sample's place in a list sorted by `sort` (what `sort_keys` returns for it)."""
    if sort == "id":
        return sample_id
    return (UNSCORED_RANK if score is None else score) << _ID_BITS | sample_id


def sort_keys(src: Store | sqlite3.Connection, flt: Filter = Filter(), *, limit: int | None = None) -> list[int]:
    """The sort keys (`key_of`) of the samples matching `flt`, ascending: under "id" the ids themselves, under
    "score" the score rank and the id in one integer (a list keeps them to find a row's place by bisection)."""
    where, args = flt.where()
    if flt.sort == "score":
        key = f"((COALESCE(j.score, {UNSCORED_RANK}) << {_ID_BITS}) | s.id)"
    else:
        key = "s.id"
    join = " LEFT JOIN judgments j ON j.sample_id = s.id" if flt.joins_judgments else ""
    inner = f"SELECT {key} AS k FROM samples s{join}{where}"
    if limit is not None:
        inner += " ORDER BY k LIMIT ?"
        args = [*args, limit]
    # One row holding every key: SQLite builds it in C in a single step, so a loader thread does not hand the
    # GIL back and forth 100,000 times (one fetch per row) while the UI thread is busy.
    text = _conn(src).execute(f"SELECT group_concat(k) FROM ({inner})", args).fetchone()[0]
    out = list(map(int, text.split(","))) if text else []
    out.sort()  # group_concat's order is not promised; timsort checks a sorted list in linear time
    return out


def rows(src: Store | sqlite3.Connection, sample_ids: list[int]) -> dict[int, Row]:
    """Short rows for these ids (missing ids, e.g. deleted meanwhile, are simply absent)."""
    if not sample_ids:
        return {}
    marks = ",".join("?" * len(sample_ids))
    cur = _conn(src).execute(
        f"SELECT s.id, s.status, s.rating, s.round_id, s.origin, substr(s.instruction, 1, {PREVIEW_CHARS}), j.score "
        f"FROM samples s LEFT JOIN judgments j ON j.sample_id = s.id WHERE s.id IN ({marks})", sample_ids)
    return {r[0]: Row(r[0], r[1], r[2], r[3], r[4], " ".join(r[5].split()), r[6]) for r in cur}


def judgment(src: Store | sqlite3.Connection, sample_id: int) -> Judgment | None:
    """The judge's verdict on a sample (None if it has none)."""
    row = _conn(src).execute("SELECT sample_id, score, critique, lesson, judge, rubric, at FROM judgments "
                             "WHERE sample_id = ?", (sample_id,)).fetchone()
    return Judgment(*row) if row else None


def score(src: Store | sqlite3.Connection, sample_id: int) -> int | None:
    row = _conn(src).execute("SELECT score FROM judgments WHERE sample_id = ?", (sample_id,)).fetchone()
    return row[0] if row else None


def has_judgments(src: Store | sqlite3.Connection) -> bool:
    return _conn(src).execute("SELECT EXISTS (SELECT 1 FROM judgments)").fetchone()[0] == 1


class ConnView:
    """A read connection where a core function wants a Store and only reads `store.conn` (e.g. judgments.decisions
    in a thread, beside the screen's writer)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn


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
