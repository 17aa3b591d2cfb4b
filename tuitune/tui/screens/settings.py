"""Settings: teacher endpoints (base URL, model, API-key variable name), default base model, paths."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, Static


class SettingsScreen(Screen):
    BINDINGS: ClassVar[list[Binding]] = [Binding("ctrl+s", "save", "Save teacher", priority=True),
                                         Binding("escape", "back", "Back")]

    def compose(self) -> ComposeResult:
        from tuitune.core.synth.teacher import teachers_path

        s = self.app.settings
        rows, problem = _teacher_rows(s)
        yield Header()
        with VerticalScroll(id="settings-form"):
            yield Static(f"[b]Paths[/b]\n  project: {escape(str(s.project))}\n  models:  {escape(str(s.models_dir))}\n"
                         f"  teachers file: {escape(str(teachers_path(s)))}\n  default base model: "
                         f"{escape(str(s.base_model))} (TUITUNE_BASE_MODEL)", markup=True)
            yield Static("[b]Teachers[/b]")
            yield Static(rows, markup=False, id="teacher-list")
            yield Static(problem, markup=False, id="teachers-problem", classes="error")
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
        from tuitune.core.synth.teacher import teachers_path

        kept = ""
        try:
            load_teachers(self.app.settings)
        except TeacherError:  # the file is broken: keep it aside, start a fresh one with this teacher
            broken = teachers_path(self.app.settings)
            aside = broken.with_name(broken.name + ".broken")
            broken.replace(aside)
            kept = f" The broken file was kept as {aside}."
        try:
            path = save_teacher(self.app.settings, TeacherConfig(vals["t-name"], vals["t-url"], vals["t-model"],
                                                                 vals["t-key"]))
        except TeacherError as e:
            msg.update(f"[red]{escape(str(e))}[/red]")
            return
        rows, problem = _teacher_rows(self.app.settings)
        self.query_one("#teacher-list", Static).update(rows)
        self.query_one("#teachers-problem", Static).update(problem)
        name = escape(vals["t-name"])
        msg.update(f"saved to {escape(str(path))}.{escape(kept)} Use it with [b]/gen 20 {name}[/b] or "
                   f"[b]tuitune synth --teacher {name}[/b].")

    def action_back(self) -> None:
        self.app.pop_screen()


def _teacher_rows(settings) -> tuple[str, str]:
    """The configured teachers, one per line, and what is wrong with teachers.yaml ("" when nothing)."""
    from tuitune.core.synth.teacher import TeacherError, load_teachers

    try:
        teachers = load_teachers(settings)
    except TeacherError as e:
        return "  (none readable)", (f"{e}\nFix the file in an editor, or add a teacher below: saving keeps the "
                                     f"broken file aside as teachers.yaml.broken and starts a new one.")
    return "\n".join(f"  {name:12} {t.base_url or '(embedded vLLM)'}  {t.model}  "
                     f"{'key: $' + t.api_key_env if t.api_key_env else 'no key'}" for name, t in teachers.items()), ""
