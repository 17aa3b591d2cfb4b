"""The Ollama Modelfile written beside a GGUF: FROM, TEMPLATE, PARAMETER stop, SYSTEM; and the model's name.

A TEMPLATE comes only from a chat template that chat_format recognises and reproduces exactly; otherwise the
Modelfile says in a comment why there is none (Ollama then falls back to its default of sending the text raw).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from tuitune.core.export_model.chat_format import ChatFormat, go_template


@dataclass
class Modelfile:
    gguf_name: str  # the GGUF's file name, beside the Modelfile
    fmt: ChatFormat | None
    system: str = ""
    note: str = ""  # why there is no TEMPLATE (fmt is None), or other remarks, as comments
    stops: list[str] = field(default_factory=list)  # extra stops when fmt is None (the tokenizer's EOS)

    def all_stops(self) -> list[str]:
        out = list(self.fmt.stops if self.fmt else [])
        for s in self.stops:
            if s and s not in out:
                out.append(s)
        return out

    def text(self) -> str:
        lines = ["# Ollama Modelfile written by tuitune. Create the model with:",
                 "#   ollama create NAME -f Modelfile", f"FROM ./{self.gguf_name}", ""]
        if self.fmt:
            tpl = go_template(self.fmt)
            if '"""' in tpl:  # cannot sit in a triple-quoted Modelfile string
                lines += ["# No TEMPLATE: the chat template's text contains three double quotes in a row.", ""]
            else:
                lines += [f"# TEMPLATE: the model's {self.fmt.family} chat template, rewritten for Ollama.",
                          f'TEMPLATE """{tpl}"""', ""]
        for note in filter(None, self.note.splitlines()):
            lines.append(f"# {note}")
        if self.note:
            lines.append("")
        for stop in self.all_stops():
            lines.append(f"PARAMETER stop {json.dumps(stop, ensure_ascii=False)}")
        system = self.system.strip()
        if system and self.fmt and not self.fmt.supports_system:
            refused = ("# No SYSTEM: this model's chat template refuses system messages; the task's system "
                       "prompt was:")
            lines += ["", refused]
            lines += [f"#   {s}" for s in system.splitlines()]
        elif system and '"""' in system:
            lines += ["", "# No SYSTEM: the task's system prompt contains three double quotes in a row."]
        elif system:
            lines += ["", f'SYSTEM """{system}"""']
        return "\n".join(lines).rstrip("\n") + "\n"


def ollama_name(text: str) -> str:
    """A model name Ollama accepts (lower case letters, digits, '.', '_', '-'), from a task name or run id."""
    name = re.sub(r"[^a-z0-9._-]+", "-", text.strip().lower()).strip("-._")
    return name[:60] or "tuitune-model"


def create_command(name: str, modelfile_path) -> str:
    import shlex

    return f"ollama create {shlex.quote(name)} -f {shlex.quote(str(modelfile_path))}"
