"""Settings: teacher endpoints (base URL, model, API-key variable name), default base model, paths."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, Static


class SettingsScreen(Screen):
    BINDINGS: ClassVar[list[Binding]] = [Binding("ctrl+s", "save", "Save teacher", priority=True), Binding("escape", "back", "Back")]

    def compose(self) -> ComposeResult:
        from tuitune.core.synth.teacher import load_teachers, teachers_path

        s = self.app.settings
        teachers = load_teachers(s)
        rows = "\n".join(f"  {name:12} {t.base_url or '(embedded vLLM)'}  {t.model}  key: ${t.api_key_env or '-'}"
                         for name, t in teachers.items())
        yield Header()
        with VerticalScroll(id="settings-form"):
            yield Static(f"[b]Paths[/b]\n  project: {s.project}\n  models:  {s.models_dir}\n"
                         f"  teachers file: {teachers_path(s)}\n  default base model: {s.base_model} "
                         f"(TUITUNE_BASE_MODEL)", markup=True)
            yield Static("[b]Teachers[/b]")
            yield Static(rows, markup=False, id="teacher-list")
            yield Static("\n[b]Add or replace a teacher[/b] (any OpenAI-compatible endpoint: OpenAI, DeepSeek, "
                         "DashScope, vLLM, Ollama, LM Studio). The key stays in your environment; only the "
                         "variable's name is saved.")
            for fid, label, placeholder in (
                    ("t-name", "Name", "e.g. deepseek"),
                    ("t-url", "Base URL", "e.g. https://api.deepseek.com/v1 or http://127.0.0.1:11434/v1"),
                    ("t-model", "Model", "e.g. deepseek-chat"),
                    ("t-key", "API key variable", "e.g. DEEPSEEK_API_KEY (empty for local servers)")):
                yield Label(label)
                yield Input(placeholder=placeholder, id=fid)
            yield Static("", id="settings-msg")
        yield Footer()

    def action_save(self) -> None:
        from tuitune.core.synth.teacher import TeacherConfig, TeacherError, load_teachers, save_teacher

        vals = {k: self.query_one(f"#{k}", Input).value.strip() for k in ("t-name", "t-url", "t-model", "t-key")}
        msg = self.query_one("#settings-msg", Static)
        if not (vals["t-name"] and vals["t-url"] and vals["t-model"]):
            msg.update("[red]name, base URL and model are needed[/red]")
            return
        try:
            path = save_teacher(self.app.settings, TeacherConfig(vals["t-name"], vals["t-url"], vals["t-model"],
                                                                 vals["t-key"]))
            teachers = load_teachers(self.app.settings)
        except TeacherError as e:
            msg.update(f"[red]{e}[/red]")
            return
        self.query_one("#teacher-list", Static).update("\n".join(
            f"  {n:12} {t.base_url or '(embedded vLLM)'}  {t.model}  key: ${t.api_key_env or '-'}"
            for n, t in teachers.items()))
        msg.update(f"saved to {path}. Use it with `/gen 20 {vals['t-name']}` or `tuitune synth --teacher "
                   f"{vals['t-name']}`.")

    def action_back(self) -> None:
        self.app.pop_screen()
