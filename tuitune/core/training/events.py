"""events.jsonl: one JSON object per line, appended and flushed as it happens, so a TUI or `runs watch` can
tail it with `read_events(run_dir, offset)`.

Event types: started, resumed, step (loss, lr, grad_norm, tokens_per_second, eta_seconds), eval, checkpoint,
check (post-train checks), merged, stopped, done, failed (error, kind, hint). Every event has `event` and `time`
(Unix seconds) fields.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

EVENTS_FILE = "events.jsonl"
TERMINAL = ("done", "failed", "stopped")


class EventWriter:
    """Appends events to runs/<id>/events.jsonl, one flushed (and fsynced) line each."""

    def __init__(self, run_dir: Path | str, *, enabled: bool = True):
        self.path = Path(run_dir) / EVENTS_FILE
        self.enabled = enabled

    def emit(self, event: str, **fields) -> dict:
        rec = {"event": event, "time": round(time.time(), 3), **fields}
        if self.enabled:
            line = json.dumps(rec, ensure_ascii=False, default=str) + "\n"
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        return rec


def read_events(run_dir: Path | str, offset: int = 0) -> tuple[list[dict], int]:
    """Events written since byte `offset`, and the offset to pass next time. A line still being written
    (no trailing newline yet) is left for the next call; an unparsable complete line is skipped."""
    path = Path(run_dir) / EVENTS_FILE
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    events = []
    for line in data[: end + 1].splitlines():
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events, offset + end + 1
