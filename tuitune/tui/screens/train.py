"""Training form: base model, method, preset overrides (with help text); launches a background run."""

from __future__ import annotations

from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Select, Static

METHODS = ("lora", "qlora", "dora", "full", "dpo", "orpo", "kto")
# Form fields that override the preset; empty means "preset decides".
NUMERIC = (("epochs", float), ("max_steps", int), ("learning_rate", float), ("lora_r", int), ("batch_size", int),
           ("max_length", int))


class TrainScreen(Screen[str | None]):
    """Returns (dismisses with) the id of the launched run, or None."""

    BINDINGS: ClassVar[list[Binding]] = [Binding("ctrl+s", "launch", "Launch", priority=True), Binding("escape", "cancel", "Back")]

    def compose(self) -> ComposeResult:
        from tuitune.core.models import list_models
        from tuitune.core.training.config import field_help

        helps = field_help()
        models = [(f"{m.name} ({m.kind}{'' if m.ready else ', not prepared'})", m.name)
                  for m in list_models(self.app.settings.models_dir)]
        yield Header()
        with VerticalScroll(id="train-form"):
            yield Static("[b]New training run[/b] — runs in the background; you can close tuitune meanwhile.")
            yield Label("Base model")
            yield Select(models, value=self.app.settings.base_model if any(
                v == self.app.settings.base_model for _, v in models) else models[0][1], id="base", allow_blank=False)
            yield Label("Method")
            yield Select([(m, m) for m in METHODS], value="lora", id="method", allow_blank=False)
            yield Static(helps["method"], classes="help", markup=False)
            for name, _ in NUMERIC:
                with Horizontal(classes="field"):
                    yield Label(name.replace("_", " "), classes="field-label")
                    yield Input(placeholder="preset", id=name, classes="field-input")
                yield Static(helps.get(name, ""), classes="help", markup=False)
            yield Static("", id="train-error")
            yield Button("Launch (Ctrl+S)", id="launch", variant="primary")
        yield Footer()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "launch":
            self.action_launch()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _config(self):
        from tuitune.core.training.config import TrainConfig

        overrides = {}
        for name, kind in NUMERIC:
            raw = self.query_one(f"#{name}", Input).value.strip()
            if raw:
                try:
                    overrides[name] = kind(raw)
                except ValueError:
                    raise ValueError(f"{name.replace('_', ' ')}: `{raw}` is not a {kind.__name__}") from None
        method = self.query_one("#method", Select).value
        return TrainConfig(method=method, base=self.query_one("#base", Select).value, **overrides)

    def action_launch(self) -> None:
        error = self.query_one("#train-error", Static)
        from pydantic import ValidationError

        try:
            cfg = self._config()
        except (ValueError, ValidationError) as e:  # a bad number or an invalid field: show it by the form
            error.update(f"[red]{e}[/red]")
            return
        error.update("Checking the data and launching…")
        self.query_one("#launch", Button).disabled = True
        self._launch(cfg)

    @work(thread=True, exclusive=True, group="train-launch")
    def _launch(self, cfg) -> None:
        from tuitune.core.models import ModelError
        from tuitune.core.training.config import ConfigError
        from tuitune.core.training.data import DataError
        from tuitune.core.training.jobs import JobError, launch

        try:
            run_id = launch(self.app.settings.project, cfg, models_dir=self.app.settings.models_dir)
        except (ConfigError, DataError, JobError, ModelError) as e:
            self.app.call_from_thread(self._failed, str(e))
            return
        self.app.call_from_thread(self.dismiss, run_id)

    def _failed(self, message: str) -> None:
        self.query_one("#train-error", Static).update(f"[red]{message}[/red]")
        self.query_one("#launch", Button).disabled = False
