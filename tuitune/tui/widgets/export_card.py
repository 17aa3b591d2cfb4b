"""A transcript card that exports a run's tuned model as a GGUF + Ollama Modelfile (core/export_model) in a thread
worker: progress while it merges, converts and checks, then the files, the `ollama create` line and how the GGUF's
greedy answers compared with the merged model's."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import ProgressBar, Static


class ExportCard(Vertical):
    DEFAULT_CLASSES = "card"

    def __init__(self, run_id: str, quant: str = "q8_0", *, force: bool = False, **kw):
        super().__init__(**kw)
        self.run_id, self.quant, self.force = run_id, quant, force
        self.result = None  # the GgufExport once written
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        yield Static(Content.from_markup("GGUF export of run [b]$run[/b] ($quant)", run=self.run_id,
                                         quant=self.quant), classes="card-title")
        yield ProgressBar(total=1.0, show_eta=False, id="export-progress")
        yield Static(Content("checking the run…"), id="export-status")

    def on_mount(self) -> None:
        self.export()

    def _status(self, text: str) -> None:
        self.query_one("#export-status", Static).update(Content(text))  # plain text: paths and messages as they are

    @work(thread=True, exclusive=True, group="export-model")
    def export(self) -> None:
        from tuitune.core.export_model import ExportError
        from tuitune.core.export_model.export import export_gguf, preflight_gguf

        project = self.app.settings.project

        def progress(what: str, fraction: float) -> None:
            self.app.call_from_thread(self._progress, what, fraction)

        try:
            preflight_gguf(project, self.run_id, quant=self.quant, force=self.force)
            result = export_gguf(project, self.run_id, quant=self.quant, force=self.force, progress=progress)
        except ExportError as e:
            self.app.call_from_thread(self._failed, str(e))
            return
        self.app.call_from_thread(self._done, result)

    def _progress(self, what: str, fraction: float) -> None:
        self.query_one("#export-progress", ProgressBar).update(progress=max(0.0, min(1.0, fraction)))
        self._status(what)

    def _failed(self, message: str) -> None:
        self.error = message
        self.query_one("#export-progress", ProgressBar).display = False
        self._status(f"not exported: {message}")

    def _done(self, result) -> None:
        self.result = result
        self.query_one("#export-progress", ProgressBar).update(progress=1.0)
        lines = [f"wrote {result.gguf} ({result.size_bytes / 2**20:.0f} MiB, {result.quant})",
                 f"wrote {result.modelfile}" + (f" (template: {result.template})" if result.template else ""),
                 f"run it in Ollama: {result.ollama_create}"]
        if result.template_note:
            lines.append(f"note: no TEMPLATE in the Modelfile: {result.template_note}")
        v = result.verification or {}
        if v.get("summary"):  # the GGUF loaded back and answered: how its greedy answers compare
            lines.append(f"check on {v.get('prompts')} prompts: {v['summary']}")
            if v.get("llama_cpp"):
                lines.append(f"  {v['llama_cpp']['summary']}")
        lines.append(f"then: ollama run {result.ollama_name}")
        self._status("\n".join(lines))
