"""Prompt templates (Jinja2 files in prompts/) and their rendering.

A project can override any template by putting a file of the same name in `<project>/prompts/`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

PROMPTS_DIR = Path(__file__).parents[2] / "prompts"  # tuitune/prompts -> ../prompts (package data)

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


class PromptError(Exception):
    """A prompt template that is missing or does not render."""


def prompt_dirs(project: Path | None = None) -> list[Path]:
    dirs = []
    if project is not None and (Path(project) / "prompts").is_dir():
        dirs.append(Path(project) / "prompts")
    dirs.append(PROMPTS_DIR)
    return dirs


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def render(name: str, *, project: Path | None = None, **context) -> str:
    """Render prompts/<name> (project override first) with `context`; trailing spaces and blank runs trimmed."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader([str(d) for d in prompt_dirs(project)]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=False, autoescape=False)
    env.filters["json"] = _json
    try:
        text = env.get_template(name).render(**context)
    except jinja2.TemplateNotFound:
        raise PromptError(f"prompt template {name!r} not found in {', '.join(map(str, prompt_dirs(project)))}; "
                          f"reinstall tuitune or restore the file") from None
    except jinja2.TemplateError as e:
        raise PromptError(f"prompt template {name!r} does not render: {e}. Fix the template file.") from None
    text = "\n".join(line.rstrip() for line in text.splitlines())
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def cjk_share(text: str) -> float:
    """Share of CJK characters among the non-space characters of `text`."""
    chars = [c for c in text if not c.isspace()]
    return sum(1 for c in chars if _CJK.match(c)) / len(chars) if chars else 0.0


def language_rule(texts: list[str]) -> str:
    """The sentence that tells the teacher which language to write in, from the task and examples."""
    share = cjk_share("".join(texts))
    if share > 0.3:
        return ("Write in Simplified Chinese (简体中文) wherever the examples do; "
                "keep the language of each field as in the examples.")
    if share > 0.02:
        return "Keep the language of each field as in the examples (e.g. English source, Chinese output)."
    return "Write in the language of the examples."
