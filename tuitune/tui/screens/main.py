"""Main screen: a conversation with the tuitune guide; plain text and slash commands."""

from __future__ import annotations

import shlex
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Markdown

HELP = """\
**Commands**

- `/task NAME: DESCRIPTION` — describe what the tuned model should do
- `/system TEXT` — set the system prompt
- `/import FILE [seeds|accepted|pending]` — import Alpaca / ShareGPT / OpenAI JSONL / CSV
- `/stats` — counts by status and origin
- `/help` — this list
"""


class MainScreen(Screen):
    BINDINGS = [
        Binding("ctrl+q", "app.quit", "Quit"),
        Binding("f1", "help", "Help"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield VerticalScroll(id="transcript")
        yield Input(placeholder="Type a message or /help", id="prompt")
        yield Footer()

    def on_mount(self) -> None:
        from tuitune.core.store import Store

        self.store = Store.open(self.app.settings.project)
        self.guide(self._welcome())
        self.query_one("#prompt", Input).focus()

    def _welcome(self) -> str:
        task = self.store.get_task()
        st = self.store.stats()
        lines = [f"Project: `{self.app.settings.project}` — {st['total']} samples"]
        if not task.description:
            lines.append("First, tell me the task: `/task NAME: what the model should do`.")
        elif st["total"] < 3:
            lines.append("Next: give me at least 3 seed examples (`/import FILE seeds`).")
        else:
            lines.append(f"Task: **{task.name or 'unnamed'}** — {task.description}")
        lines.append("Type `/help` for commands.")
        return "\n\n".join(lines)

    # ---- transcript -------------------------------------------------------------------------------
    def _post(self, text: str, cls: str) -> None:
        transcript = self.query_one("#transcript", VerticalScroll)
        transcript.mount(Markdown(text, classes=cls))
        transcript.scroll_end(animate=False)

    def guide(self, text: str) -> None:
        self._post(text, "msg-guide")

    def error(self, text: str) -> None:
        self._post(text, "msg-error")

    def action_help(self) -> None:
        self.guide(HELP)

    # ---- input ----------------------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        event.input.value = ""
        if not text:
            return
        self._post(text, "msg-user")
        if not text.startswith("/"):
            self.guide("I understand slash commands so far; type `/help`.")
            return
        cmd, _, arg = text[1:].partition(" ")
        handler = getattr(self, f"cmd_{cmd}", None)
        if handler is None:
            self.error(f"Unknown command `/{cmd}`. Type `/help` for the list.")
            return
        handler(arg.strip())

    def cmd_help(self, arg: str) -> None:
        self.action_help()

    def cmd_task(self, arg: str) -> None:
        name, sep, desc = arg.partition(":")
        if not sep:
            self.error("Usage: `/task NAME: what the model should do`")
            return
        self.store.set_task(name=name.strip(), description=desc.strip())
        self.guide(f"Task saved: **{name.strip()}**. Next: import or type at least 3 seed examples.")

    def cmd_system(self, arg: str) -> None:
        self.store.set_task(system_prompt=arg)
        self.guide("System prompt saved.")

    def cmd_stats(self, arg: str) -> None:
        st = self.store.stats()
        rows = "\n".join(f"| {k} | {v} |" for k, v in sorted({**st["by_status"], **st["by_origin"]}.items()))
        self.guide(f"**{st['total']} samples**\n\n| kind | count |\n|---|---|\n{rows}")

    def cmd_import(self, arg: str) -> None:
        from tuitune.core.formats import FormatError, read_file

        parts = shlex.split(arg)
        if not parts:
            self.error("Usage: `/import FILE [seeds|accepted|pending]`")
            return
        as_ = parts[1] if len(parts) > 1 else "accepted"
        origin, status = {"seeds": ("seed", "accepted"), "accepted": ("import", "accepted"),
                          "pending": ("import", "pending")}.get(as_, (None, None))
        if origin is None:
            self.error(f"`{as_}`: expected seeds, accepted or pending")
            return
        path = Path(parts[0]).expanduser()
        if not path.is_absolute():
            path = self.app.settings.project / path
        try:
            parsed = read_file(path)
        except FormatError as e:
            self.error(f"Nothing imported from `{path}`:\n\n```\n{e}\n```")
            return
        n = self.store.add_samples(s.with_(origin=origin, status=status) for s in parsed.samples)
        self.guide(f"Imported **{n}** records ({parsed.format}) as {as_}; {parsed.duplicates} duplicates kept.")
