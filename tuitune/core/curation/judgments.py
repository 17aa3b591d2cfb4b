"""The judge's verdicts in the project database (table `judgments`, one per sample: the latest), and the
reviewer's decisions they are calibrated on."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tuitune.core.data.store import Store, now


@dataclass
class Judgment:
    sample_id: int
    score: int  # 1-5
    critique: str = ""
    lesson: str = ""  # the lesson the sample breaks ("" when none)
    judge: str = ""  # "<teacher name>/<model>"
    rubric: str = ""  # "<template name>@<content hash>"
    at: str = ""

    def to_dict(self) -> dict:
        return {"score": self.score, "critique": self.critique, "lesson": self.lesson, "judge": self.judge,
                "rubric": self.rubric, "at": self.at}


_COLS = "sample_id, score, critique, lesson, judge, rubric, at"


def save(store: Store, j: Judgment) -> Judgment:
    """Store (or replace) a sample's verdict, committed at once: a kill keeps every verdict saved before it."""
    j.at = j.at or now()
    with store.transaction():
        store.conn.execute(f"INSERT OR REPLACE INTO judgments ({_COLS}) VALUES (?,?,?,?,?,?,?)",
                           (j.sample_id, j.score, j.critique, j.lesson, j.judge, j.rubric, j.at))
    return j


def get(store: Store, sample_ids: Iterable[int] | None = None) -> dict[int, Judgment]:
    """Verdicts by sample id (all of them, or those of `sample_ids`)."""
    if sample_ids is None:
        rows = store.conn.execute(f"SELECT {_COLS} FROM judgments").fetchall()
    else:
        ids = list(sample_ids)
        rows = []
        for i in range(0, len(ids), 900):  # SQLite's limit on bound parameters
            chunk = ids[i:i + 900]
            rows += store.conn.execute(f"SELECT {_COLS} FROM judgments WHERE sample_id IN "
                                       f"({','.join('?' * len(chunk))})", chunk).fetchall()
    return {r[0]: Judgment(*r) for r in rows}


def to_judge(store: Store, *, round_id: int | None = None, again: bool = False, rubric: str = "",
             judge: str = "") -> list[int]:
    """Ids of the samples a judge run scores: every non-seed sample (of one round) without a verdict; with
    `again`, also those already scored (by another rubric or judge when those are given, else all)."""
    where, args = ["s.origin != 'seed'"], []
    if round_id is not None:
        where.append("s.round_id = ?")
        args.append(round_id)
    if not again:
        where.append("j.sample_id IS NULL")
    elif rubric or judge:
        where.append("(j.sample_id IS NULL OR j.rubric != ? OR j.judge != ?)")
        args += [rubric, judge]
    sql = (f"SELECT s.id FROM samples s LEFT JOIN judgments j ON j.sample_id = s.id WHERE {' AND '.join(where)} "
           f"ORDER BY s.id")
    return [r[0] for r in store.conn.execute(sql, args)]


def decisions(store: Store) -> list[tuple[int, bool]]:
    """(judge's score, the reviewer accepted it as it was) for every scored sample a human decided on.
    Accepted and rejected count as they are; an edited sample counts as accepted only if the judge scored the
    edited text (scored after the last edit), since the text the judge saw needed fixing otherwise. Decisions
    the judge made itself (bulk actions) never count."""
    rows = store.conn.execute(
        "SELECT j.score, s.status, j.at, (SELECT MAX(r.at) FROM reviews r WHERE r.sample_id = s.id AND "
        "r.action = 'edit') FROM samples s JOIN judgments j ON j.sample_id = s.id "
        "WHERE s.decided_by = 'human' AND s.status IN ('accepted', 'edited', 'rejected') ORDER BY s.id").fetchall()
    out = []
    for score, status, judged_at, edited_at in rows:
        if status == "edited":
            out.append((score, bool(edited_at) and judged_at >= edited_at))
        else:
            out.append((score, status == "accepted"))
    return out


def pending_scores(store: Store) -> list[tuple[int, int]]:
    """(sample id, score) of the pending samples the judge scored: what a bulk action could apply to."""
    return store.conn.execute("SELECT s.id, j.score FROM samples s JOIN judgments j ON j.sample_id = s.id "
                              "WHERE s.status = 'pending' ORDER BY s.id").fetchall()


def round_means(store: Store) -> dict[int, tuple[float, int]]:
    """Per round: (the judge's mean score, how many of its samples were scored)."""
    rows = store.conn.execute("SELECT s.round_id, AVG(j.score), COUNT(*) FROM samples s JOIN judgments j ON "
                              "j.sample_id = s.id WHERE s.round_id IS NOT NULL GROUP BY s.round_id").fetchall()
    return {r: (float(m), int(n)) for r, m, n in rows}
