"""Synthesis rounds in the project database (table `rounds`): start, update counters, finish, find the one
a killed process left unfinished so it can be resumed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from tuitune.core.data.store import Store, StoreError, now

UNFINISHED = ("running", "cancelled", "failed", "incomplete")  # a new `synth` resumes these


@dataclass
class Round:
    id: int
    started_at: str
    finished_at: str | None
    status: str
    requested: int
    params: dict = field(default_factory=dict)
    counters: dict = field(default_factory=dict)
    prompt: str = ""


def _row(row) -> Round:
    id_, started, finished, status, requested, params, counters, prompt = row
    return Round(id_, started, finished, status, requested, json.loads(params or "{}"),
                 json.loads(counters or "{}"), prompt)


_COLS = "id, started_at, finished_at, status, requested, params, counters, prompt"


def start_round(store: Store, requested: int, params: dict, prompt: str = "") -> Round:
    with store.transaction():
        cur = store.conn.execute(
            "INSERT INTO rounds (started_at, status, requested, params, counters, prompt) VALUES (?,?,?,?,?,?)",
            (now(), "running", requested, json.dumps(params, ensure_ascii=False), "{}", prompt))
    return get_round(store, cur.lastrowid)


def get_round(store: Store, round_id: int) -> Round:
    row = store.conn.execute(f"SELECT {_COLS} FROM rounds WHERE id = ?", (round_id,)).fetchone()
    if row is None:
        raise StoreError(f"No round with id {round_id}.")
    return _row(row)


def list_rounds(store: Store) -> list[Round]:
    return [_row(r) for r in store.conn.execute(f"SELECT {_COLS} FROM rounds ORDER BY id")]


def unfinished_round(store: Store) -> Round | None:
    """The latest round that was started but not finished (killed, crashed or cancelled)."""
    row = store.conn.execute(
        f"SELECT {_COLS} FROM rounds WHERE status IN ({','.join('?' * len(UNFINISHED))}) ORDER BY id DESC LIMIT 1",
        UNFINISHED).fetchone()
    return _row(row) if row else None


def update_round(store: Store, round_id: int, *, counters: dict | None = None, prompt: str | None = None,
                 status: str | None = None, params: dict | None = None) -> None:
    sets, args = [], []
    if counters is not None:
        sets.append("counters = ?")
        args.append(json.dumps(counters))
    if prompt is not None:
        sets.append("prompt = ?")
        args.append(prompt)
    if params is not None:
        sets.append("params = ?")
        args.append(json.dumps(params, ensure_ascii=False))
    if status is not None:
        sets.append("status = ?")
        args.append(status)
        if status != "running":
            sets.append("finished_at = ?")
            args.append(now())
    if not sets:
        return
    with store.transaction():
        store.conn.execute(f"UPDATE rounds SET {', '.join(sets)} WHERE id = ?", (*args, round_id))


def finish_round(store: Store, round_id: int, counters: dict, status: str = "finished") -> None:
    update_round(store, round_id, counters=counters, status=status)


def stored_in_round(store: Store, round_id: int) -> int:
    return store.count(round_id=round_id)
