"""Training form: every training setting, generated from TrainConfig's fields (the same names, help and choices
as `tuitune train --help`); the common ones first, the rest under "All settings". Launches a background run.

The base model is picked from a list (the embedded model, registered names, the Hugging Face cache's models) or
typed as a Hub ID `ORG/NAME[@REVISION]` or a folder; a Hub model that is not cached is downloaded first, with
its progress shown on the form."""

from __future__ import annotations

from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Collapsible, Footer, Header, Input, Label, ProgressBar, Select, Static

# Shown first; every other setting is under "All settings".
COMMON = ("base", "method", "epochs", "max_steps", "learning_rate", "lora_r", "batch_size", "micro_batch_size",
          "max_length", "holdout", "eval")
UNSET = "preset"  # the Select value of an optional on/off setting left to the presets


class TrainScreen(Screen[str | None]):
    """Returns (dismisses with) the id of the launched run, or None."""

    BINDINGS: ClassVar[list[Binding]] = [Binding("ctrl+s", "launch", "Launch", priority=True),
                                         Binding("escape", "cancel", "Back")]

    def __init__(self, defaults: dict | None = None):
        super().__init__()
        self.defaults = defaults or {}  # field -> value the form starts with (e.g. the app's base model)

    def compose(self) -> ComposeResult:
        from tuitune.core.training.options import option_specs

        specs = {s.name: s for s in option_specs()}
        yield Header()
        with VerticalScroll(id="train-form"):
            yield Static("[b]New training run[/b] — runs in the background; you can close tuitune meanwhile. "
                         "Empty fields are chosen by the presets from your data and hardware.")
            for name in COMMON:
                yield from self._field(specs[name])
            with Collapsible(title="All settings", id="all-settings"):
                for name, spec in specs.items():
                    if name not in COMMON:
                        yield from self._field(spec)
            yield Static("", id="train-error")
            yield ProgressBar(total=1.0, id="train-download", show_eta=False)
            yield Button("Launch (Ctrl+S)", id="launch", variant="primary")
        yield Footer()

    def _field(self, spec) -> ComposeResult:
        from tuitune.core.training.options import show

        start = self.defaults.get(spec.name, spec.default)
        wid = f"opt-{spec.name}"
        with Horizontal(classes="field"):
            yield Label(spec.name.replace("_", " "), classes="field-label")
            if spec.name == "base":
                yield self._base_select(wid, start)
            elif spec.kind == "choice":
                yield Select([(c, c) for c in spec.choices], value=start, id=wid, allow_blank=False)
            elif spec.kind == "bool":
                opts = [("on", "on"), ("off", "off")] + ([(UNSET, UNSET)] if spec.optional else [])
                value = UNSET if start is None else ("on" if start else "off")
                yield Select(opts, value=value, id=wid, allow_blank=False)
            else:
                yield Input(value=show(start) if not spec.optional else "", id=wid, classes="field-input",
                            placeholder=UNSET if spec.optional else "")
        yield Static(spec.help, classes="help", markup=False)
        if spec.name == "base":
            with Horizontal(classes="field"):
                yield Label("or type", classes="field-label")
                yield Input(id="base-id", classes="field-input", placeholder="ORG/NAME[@REVISION] or a folder")
            yield Static("A Hub ID (Qwen/Qwen2.5-0.5B-Instruct) or a folder; when filled it wins over the list. "
                         "Not in the cache: downloaded first.", classes="help", markup=False)

    def on_mount(self) -> None:
        self.query_one("#train-download", ProgressBar).display = False

    def _base_select(self, wid: str, start) -> Select:
        from tuitune.core.hub import cached_models
        from tuitune.core.models import ModelError, list_models

        models = []
        for m in list_models(self.app.settings.models_dir):
            state = "" if m.ready else (", not downloaded" if m.kind == "hub" else ", not prepared")
            models.append((f"{m.name} ({m.kind}{state})", m.name))
        try:
            cached = cached_models() if self.app.settings.hub == "huggingface" else []
        except (ModelError, OSError):
            cached = []  # an unreadable cache: its models are still typed in below
        for c in cached:
            chat = "" if c.chat_template else ", no chat template"
            value = c.id if not any(o.id == c.id and o is not c for o in cached) else f"{c.id}@{c.revision}"
            if value not in [v for _, v in models]:
                models.append((f"{value} (hub cache, {c.size / 2**20:.0f} MiB{chat})", value))
        if start not in [v for _, v in models]:
            models.append((str(start), start))
        return Select(models, value=start, id=wid, allow_blank=False)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "launch":
            self.action_launch()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def config(self):
        """The TrainConfig the form describes (ConfigError naming the field when a value is wrong)."""
        from tuitune.core.training.config import TrainConfig
        from tuitune.core.training.options import option_specs, parse

        values = {}
        for spec in option_specs():
            widget = self.query_one(f"#opt-{spec.name}")
            if isinstance(widget, Select):
                raw = widget.value
                if spec.kind == "bool":
                    values[spec.name] = None if raw == UNSET else raw == "on"
                else:
                    values[spec.name] = raw
            else:
                values[spec.name] = parse(spec.name, widget.value)
        typed = self.query_one("#base-id", Input).value.strip()
        if typed:
            values["base"] = typed
        return TrainConfig().updated(**values)

    def action_launch(self) -> None:
        from tuitune.core.training.config import ConfigError

        error = self.query_one("#train-error", Static)
        try:
            cfg = self.config()
        except ConfigError as e:  # a bad number or a value out of range: show it by the form
            error.update(f"[red]{_escape(str(e))}[/red]")
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

        def progress(stage: str, frac: float) -> None:  # a Hub base model downloading (from this thread)
            self.app.call_from_thread(self._progress, stage, frac)

        try:
            run_id = launch(self.app.settings, cfg, progress=progress)
        except (ConfigError, DataError, JobError, ModelError) as e:
            self.app.call_from_thread(self._failed, str(e))
            return
        self.app.call_from_thread(self.dismiss, run_id)

    def _progress(self, stage: str, frac: float) -> None:
        bar = self.query_one("#train-download", ProgressBar)
        bar.display = True
        bar.update(progress=frac)
        self.query_one("#train-error", Static).update(_escape(stage))

    def _failed(self, message: str) -> None:
        self.query_one("#train-download", ProgressBar).display = False
        self.query_one("#train-error", Static).update(f"[red]{_escape(message)}[/red]")
        self.query_one("#launch", Button).disabled = False


def _escape(text: str) -> str:
    from textual.markup import escape

    return escape(text)
