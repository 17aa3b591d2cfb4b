"""A training run's folder, `<project>/runs/<id>/`, and the one reader of its events.

`RunDir` names every path of a run folder, so no other module spells `merged/` or `events.jsonl`.
`EventFollower` reads only the bytes of `events.jsonl` added since its last call and keeps the run's state
(status, step, loss curve, last failure, verdict, engine parity); the job list, `runs watch` and the TUI's card all follow a
run with it. It never raises on a bad file: a line that is not a JSON object with an `event` name, invalid
UTF-8, a step without a step number or a non-numeric loss is skipped and counted (`state.bad_lines`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

RUNS = "runs"
TERMINAL = ("done", "failed", "stopped")
STARTS = ("started", "resumed", "resume_requested")


class RunNotFound(Exception):
    """No run folder with that id in the project."""


@dataclass(frozen=True)
class RunDir:
    """Every path of one run folder."""

    path: Path

    @classmethod
    def of(cls, project: Path | str, run_id: str) -> RunDir:
        """The folder run `run_id` has (or will have); does not check that it exists."""
        if not run_id or "/" in run_id or run_id in (".", ".."):
            raise RunNotFound(f"{run_id!r} is not a run id")
        return cls(Path(project) / RUNS / run_id)

    @classmethod
    def find(cls, project: Path | str, run_id: str) -> RunDir:
        """The existing run `run_id`, or RunNotFound listing the known ones."""
        run = cls.of(project, run_id)
        if not run.config.is_file():
            known = ", ".join(r.id for r in all_runs(project))
            raise RunNotFound(f"No run {run_id!r} in {Path(project) / RUNS}. Known runs: {known or 'none'}.")
        return run

    @property
    def id(self) -> str:
        return self.path.name

    config = property(lambda self: self.path / "config.yaml")
    data = property(lambda self: self.path / "data.jsonl")
    events = property(lambda self: self.path / "events.jsonl")
    pid_file = property(lambda self: self.path / "worker.pid")
    log = property(lambda self: self.path / "worker.log")
    chat_template = property(lambda self: self.path / "chat_template.jinja")
    checkpoints = property(lambda self: self.path / "checkpoints")
    tensorboard = property(lambda self: self.path / "tensorboard")
    adapter = property(lambda self: self.path / "adapter")
    merged = property(lambda self: self.path / "merged")
    eval_dir = property(lambda self: self.path / "eval")
    # Written at launch for distributed runs (launch_plan.py): the engines' own config files and the commands.
    deepspeed_config = property(lambda self: self.path / "deepspeed.json")
    fsdp_config = property(lambda self: self.path / "fsdp.json")
    launch_file = property(lambda self: self.path / "launch.json")

    def has_adapter(self) -> bool:
        return (self.adapter / "adapter_config.json").is_file()

    def has_merged(self) -> bool:
        return (self.merged / "config.json").is_file()

    def last_checkpoint(self) -> Path | None:
        """The newest complete checkpoint (one with trainer_state.json), or None."""
        if not self.checkpoints.is_dir():
            return None
        ckpts = [p for p in self.checkpoints.glob("checkpoint-*")
                 if p.is_dir() and p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").exists()]
        return max(ckpts, key=lambda p: int(p.name.split("-")[-1]), default=None)

    def follower(self) -> EventFollower:
        return EventFollower(self.events)


def all_runs(project: Path | str) -> list[RunDir]:
    root = Path(project) / RUNS
    if not root.is_dir():
        return []
    return [RunDir(p) for p in sorted(root.iterdir(), key=lambda p: p.name) if (p / "config.yaml").is_file()]


# ---- following events.jsonl ----------------------------------------------------------------------------

def _number(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _parse(line: bytes) -> dict | None:
    """One event from one line, or None. A line whose start was torn off (a crash mid-write, then a later
    event appended to it) still yields that later event."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return None
    for start in (0, text.rfind('{"event"')):
        if start < 0:
            continue
        try:
            ev = json.loads(text[start:])
        except ValueError:
            continue
        if isinstance(ev, dict) and isinstance(ev.get("event"), str):
            return ev
    return None


@dataclass
class RunState:
    """What the events say about a run so far."""

    status: str = "running"  # running (as far as the events go) / done / failed / stopped
    step: int = 0
    max_steps: int | None = None
    loss: float | None = None
    losses: list[tuple[int, float]] = field(default_factory=list)
    last_step: dict = field(default_factory=dict)
    terminal: dict = field(default_factory=dict)  # the last done/failed/stopped event since the last start
    started: float | None = None  # time of the first event
    verdict: dict | None = None  # the last `verdict` event (held-out evaluation after training)
    parity: dict | None = None  # the last `parity` event (engine parity check: pairs, warnings, or why skipped)
    model: dict = field(default_factory=dict)  # the last `model` event
    checks: list[dict] = field(default_factory=list)
    phase: str = ""  # after the last step: what the worker does now (merging, checking, the held-out verdict)
    events: int = 0
    bad_lines: int = 0

    def apply(self, ev: dict) -> bool:
        """Fold one event in; False (and counted as bad) when it lacks what its kind needs."""
        kind = ev["event"]
        if self.started is None and _number(ev.get("time")) is not None:
            self.started = float(ev["time"])
        if kind == "step":
            step = ev.get("step")
            if isinstance(step, bool) or not isinstance(step, int):
                self.bad_lines += 1
                return False
            self.step, self.last_step = step, ev
            ms = ev.get("max_steps")
            if isinstance(ms, int) and not isinstance(ms, bool) and ms > 0:
                self.max_steps = ms
            self.loss = _number(ev.get("loss"))
            if self.loss is not None:
                self.losses.append((step, self.loss))
        elif kind in STARTS:
            self.status, self.terminal, self.phase = "running", {}, ""
        elif kind == "phase":
            self.phase = str(ev.get("message") or ev.get("phase") or "")
        elif kind in TERMINAL:
            self.status, self.terminal = kind, ev
            if kind == "done" and isinstance(ev.get("step"), int):
                self.step = ev["step"]
        elif kind == "verdict":
            self.verdict = ev
        elif kind == "parity":
            self.parity = ev
        elif kind == "model":
            self.model = ev
        elif kind == "check":
            self.checks.append(ev)
        self.events += 1
        return True


class EventFollower:
    """Tails one events.jsonl: `poll()` returns the events appended since the last call (applied to `state`).
    A last line without its newline is left for the next poll, unless `final=True` (the writer is gone)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.offset = 0
        self.state = RunState()

    def poll(self, *, final: bool = False) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            return []
        end = len(data) if final else data.rfind(b"\n") + 1
        if end <= 0:
            return []
        self.offset += end
        out = []
        for line in data[:end].splitlines():
            if not line.strip():
                continue
            ev = _parse(line)
            if ev is None:
                self.state.bad_lines += 1
            elif self.state.apply(ev):
                out.append(ev)
        return out


def read_all(path: Path | str) -> RunState:
    """The state after every event in the file (a torn last line counted as bad)."""
    f = EventFollower(path)
    f.poll(final=True)
    return f.state


def iso(t: float | None) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds") if t is not None else ""
