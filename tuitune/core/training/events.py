"""Writing a run's events.jsonl: one JSON object per line, appended, flushed and fsynced as it happens.

Event types: started, resumed, model, step (loss, lr, grad_norm, tokens_per_second, eta_seconds), eval,
checkpoint, check (post-train checks), merged, verdict (held-out evaluation), stopped, done, failed (error,
kind, hint). Every event has `event` and `time` (Unix seconds). Reading is `run_dir.EventFollower`'s job.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tuitune.core.training.run_dir import EventFollower, RunDir


class EventWriter:
    """Appends events to a run's events.jsonl. Each event starts on a fresh line: if the file ends in a torn
    line (a writer killed mid-write), a newline goes first, so the new event is never glued to it."""

    def __init__(self, run_dir: Path | str, *, enabled: bool = True):
        self.path = RunDir(Path(run_dir)).events
        self.enabled = enabled

    def emit(self, event: str, **fields) -> dict:
        rec = {"event": event, "time": round(time.time(), 3), **fields}
        if self.enabled:
            line = (json.dumps(rec, ensure_ascii=False, default=str) + "\n").encode("utf-8")
            with open(self.path, "a+b") as f:
                size = f.seek(0, os.SEEK_END)
                if size:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":
                        line = b"\n" + line
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        return rec


def read_events(run_dir: Path | str, offset: int = 0) -> tuple[list[dict], int]:
    """The valid events written since byte `offset`, and the offset for the next call (see EventFollower)."""
    f = EventFollower(RunDir(Path(run_dir)).events)
    f.offset = offset
    events = f.poll()
    return events, f.offset
