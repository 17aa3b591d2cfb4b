"""A transcript card that follows a training run from its events.jsonl: progress, loss sparkline, speed, ETA.
It reads the file, so it works for runs started before the TUI was (re)opened."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.markup import escape
from textual.message import Message
from textual.widgets import ProgressBar, Sparkline, Static


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


class TrainCard(Vertical):
    DEFAULT_CLASSES = "card"

    @dataclass
    class Finished(Message):
        run_id: str
        status: str

    def __init__(self, run_id: str, **kw):
        super().__init__(**kw)
        self.run_id = run_id
        self._events_offset = 0
        self.losses: list[float] = []
        self.status = "running"
        self.last: dict = {}

    def compose(self) -> ComposeResult:
        yield Static(f"Training run [b]{self.run_id}[/b]", classes="card-title")
        yield ProgressBar(total=None, show_eta=False, id="train-progress")
        yield Sparkline([], id="loss")
        yield Static("waiting for the worker…", id="train-status")

    def on_mount(self) -> None:
        from tuitune.core.training.jobs import run_dir

        self._run_dir = run_dir(self.app.settings.project, self.run_id)
        self._timer = self.set_interval(1.0, self.poll)  # before the first poll, which stops it if the run ended
        self.poll()

    def poll(self) -> None:
        from tuitune.core.training.events import read_events
        from tuitune.core.training.jobs import run_info

        events, self._events_offset = read_events(self._run_dir, self._events_offset)
        for ev in events:
            self.apply(ev)
        if events:
            self.render_state()
        if self.status == "running" and run_info(self._run_dir).status != "running":
            self.status = run_info(self._run_dir).status  # the worker vanished: interrupted
            self.render_state()
        if self.status != "running":
            self._timer.stop()
            self.post_message(self.Finished(self.run_id, self.status))

    def apply(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind == "step":
            self.last = ev
            if ev.get("loss") is not None:
                self.losses.append(float(ev["loss"]))
        elif kind in ("done", "failed", "stopped"):
            self.status = kind
            self.last = {**self.last, **ev}

    def render_state(self) -> None:
        bar = self.query_one("#train-progress", ProgressBar)
        ev = self.last
        if ev.get("max_steps"):
            bar.update(total=ev["max_steps"], progress=ev.get("step", 0))
        self.query_one("#loss", Sparkline).data = self.losses[-200:]
        if self.status == "running":
            loss = f"{ev['loss']:.3f}" if ev.get("loss") is not None else "?"
            text = (f"step {ev.get('step', 0)}/{ev.get('max_steps', '?')} · loss {loss} · "
                    f"{ev.get('tokens_per_second') or 0:.0f} tok/s · ETA {_eta(ev.get('eta_seconds'))}")
        elif self.status == "done":
            text = f"[green]done[/green] · merged model in runs/{self.run_id}/merged — try it: `/chat {self.run_id}`"
        elif self.status == "failed":
            advice = f"\n{escape(ev['hint'])}" if ev.get("hint") else ""
            text = f"[red]failed[/red]: {escape(ev.get('error', 'see worker.log'))}{advice}"
        else:
            text = f"[yellow]{self.status}[/yellow] — resume with `tuitune train --resume {self.run_id}`"
        self.query_one("#train-status", Static).update(text)
