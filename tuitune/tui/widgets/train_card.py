"""A transcript card that follows a training run from its events.jsonl: progress, loss sparkline, speed, ETA.
It tails the file (only new bytes each second), so it works for runs started before the TUI was (re)opened."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.markup import escape
from textual.message import Message
from textual.widgets import ProgressBar, Sparkline, Static

from tuitune.tui.widgets.verdict import VerdictView


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _after_steps(run_path) -> list[str]:
    """What the run does after its last step (core: TrainConfig.after_steps); nothing if its config is unreadable."""
    from tuitune.core.training.config import ConfigError, TrainConfig

    try:
        return TrainConfig.load(run_path / "config.yaml").after_steps()
    except (ConfigError, OSError):
        return []


class TrainCard(Vertical):
    DEFAULT_CLASSES = "card"
    BINDINGS: ClassVar[list[Binding]] = [Binding("g", "export_gguf", "export GGUF")]
    can_focus = True  # Shift+Tab onto the card, then g

    @dataclass
    class Finished(Message):
        run_id: str
        status: str

    def __init__(self, run_id: str, **kw):
        super().__init__(**kw)
        self.run_id = run_id
        self.status = "running"
        self._follower = None
        self._after: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static(f"Training run [b]{self.run_id}[/b]", classes="card-title")
        yield ProgressBar(total=None, show_eta=False, id="train-progress")
        yield Sparkline([], id="loss")
        yield Static("waiting for the worker…", id="train-status")

    @property
    def state(self):
        """What the events said so far (run_dir.RunState)."""
        return self._follower.state

    @property
    def last(self) -> dict:
        """The last step event."""
        return self._follower.state.last_step if self._follower else {}

    def on_mount(self) -> None:
        from tuitune.core.training.run_dir import RunDir

        self._run = RunDir.of(self.app.settings.project, self.run_id)
        self._follower = self._run.follower()
        self._after = _after_steps(self._run.path)
        self._timer = self.set_interval(1.0, self.poll)  # before the first poll, which stops it if the run ended
        self.poll()

    def poll(self) -> None:
        from tuitune.core.training.jobs import worker_alive

        if self._follower.poll():
            self.status = self.state.status
            self.render_state()
        if self.status == "running" and not worker_alive(self._run.path):
            self._follower.poll(final=True)  # the worker vanished: read what it left, then it is interrupted
            self.status = "interrupted" if self.state.status == "running" else self.state.status
            self.render_state()
        if self.status != "running":
            self._timer.stop()
            self.post_message(self.Finished(self.run_id, self.status))

    def action_export_gguf(self) -> None:
        """g: the finished run's GGUF + Ollama Modelfile (the main screen's /gguf, which asks before replacing)."""
        if self.status != "done":
            self.app.notify("the run has not finished: export its model once it is done", severity="warning")
            return
        self.screen.run_command(f"/gguf {self.run_id}")

    def render_state(self) -> None:
        st = self.state
        bar = self.query_one("#train-progress", ProgressBar)
        if st.max_steps:
            bar.update(total=st.max_steps, progress=st.step)
        self.query_one("#loss", Sparkline).data = [v for _, v in st.losses[-200:]]
        ev, end = st.last_step, st.terminal
        if self.status == "running" and st.phase:  # trained; merging, checking or judging it
            loss = f" · last loss {st.loss:.3f}" if st.loss is not None else ""
            text = f"[b]{escape(st.phase)}[/b] · trained {st.step}/{st.max_steps or '?'} steps{loss}"
        elif self.status == "running":
            loss = f"{st.loss:.3f}" if st.loss is not None else "?"
            text = (f"step {st.step}/{st.max_steps or '?'} · loss {loss} · "
                    f"{_num(ev.get('tokens_per_second')):.0f} tok/s · ETA {_eta(_num(ev.get('eta_seconds'), None))}")
            if ev.get("gpu_peak_gib") is not None:  # peak allocated / reserved GPU memory
                text += f" · GPU {_num(ev['gpu_peak_gib']):.1f}/{_num(ev.get('gpu_reserved_gib')):.1f} GiB"
            if self._after:  # the ETA is the steps'; say what comes after them (the verdict can take minutes)
                text += f"\n[dim]then {escape(_and(self._after))}[/dim]"
        elif self.status == "done":
            text = (f"[green]done[/green] · merged model in runs/{escape(self.run_id)}/merged — try it: "
                    f"[b]/chat {escape(self.run_id)}[/b] · take it to Ollama / llama.cpp: [b]/gguf[/b] (g here)")
        elif self.status == "failed":
            advice = f"\n{escape(str(end['hint']))}" if end.get("hint") else ""
            text = f"[red]failed[/red]: {escape(str(end.get('error', 'see worker.log')))}{advice}"
        else:
            text = (f"[yellow]{escape(self.status)}[/yellow] — resume with "
                    f"[b]tuitune train --resume {escape(self.run_id)}[/b]")
        self.query_one("#train-status", Static).update(text)
        if st.verdict and not self.query(VerdictView):  # the held-out verdict: a table, the words, `v` for items
            self.mount(VerdictView(st.verdict, self._run.path, id="verdict"))
        if st.parity:  # the engine parity check (transformers vs vLLM on merged/, the GGUF once exported)
            self._show_parity(st.parity)

    def _show_parity(self, ev: dict) -> None:
        from tuitune.core.evaluation.parity import event_lines

        style = {"info": "{}", "warning": "[yellow]{}[/yellow]", "note": "[dim]{}[/dim]"}
        text = "\n".join(style[level].format(escape(words)) for level, words in event_lines(ev))
        found = self.query("#parity")
        if found:
            found.first(Static).update(text)
        else:
            self.mount(Static(text, id="parity"))


def _num(v, default: float | None = 0.0) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else default
