"""Completion for the main screen's prompt: slash commands, run ids after `/chat`, `/compare` and `/eval`, file
paths after `/import` (relative to the project folder, as `/import` reads them) and its `seeds|accepted|pending`.

`complete()` is a pure function of the typed text and what exists; `CommandSuggester` is the Textual suggester
that calls it (the suggestion shows as grey text after the cursor; → or End takes it)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path

from textual.suggester import Suggester

RUN_COMMANDS = ("chat", "compare", "eval", "gguf", "verdict")
IMPORT_AS = ("seeds", "accepted", "pending")
MAX_ENTRIES = 2000  # a folder listing stops there (a huge folder must not stall a keystroke)


def _first(typed: str, options: Iterable[str], *, fold: bool = True) -> str | None:
    """The first option that starts with `typed` and is longer (case-insensitive when `fold`)."""
    key = typed.casefold() if fold else typed
    for option in options:
        if len(option) > len(typed) and (option.casefold() if fold else option).startswith(key):
            return option
    return None


def servable_runs(project: Path) -> list[str]:
    """Run ids of `project` that have something to chat with (an adapter or a merged model), newest first."""
    runs = project / "runs"
    try:
        found = [p.name for p in runs.iterdir()
                 if (p / "adapter" / "adapter_config.json").exists() or (p / "merged" / "config.json").exists()]
    except OSError:
        return []
    return sorted(found, reverse=True)  # ids start with the date and time


def complete_path(typed: str, root: Path) -> str | None:
    """`typed` completed to an existing file or folder (folders end with "/"); relative paths are taken from
    `root`. A name with a space is only completed inside quotes ('"my fi' -> '"my file.json"')."""
    quote = typed[:1] if typed[:1] in ("'", '"') else ""
    body = typed[len(quote):]
    folder, _, stem = body.rpartition("/")
    shown_folder = folder + "/" if folder or body.startswith("/") else ""
    base = Path(os.path.expanduser(shown_folder)) if shown_folder else Path()
    where = base if base.is_absolute() else root / base
    try:
        names = []
        with os.scandir(where) as it:
            for i, entry in enumerate(it):
                if i >= MAX_ENTRIES:
                    break
                if entry.name.startswith(".") and not stem.startswith("."):
                    continue
                names.append(entry.name + ("/" if entry.is_dir() else ""))
    except OSError:
        return None
    names.sort(key=str.casefold)
    for name in names:
        if not name.startswith(stem) or name == stem:
            continue
        if not quote and any(c.isspace() for c in name):
            continue
        done = typed + name[len(stem):]
        return done + quote if quote and not name.endswith("/") else done
    return None


def complete(value: str, *, commands: Sequence[str], run_ids: Sequence[str] = (), root: Path | None = None) -> str | None:
    """The whole prompt completed (it starts with `value`), or None when there is nothing to add."""
    if not value.startswith("/"):
        return None
    name, space, rest = value[1:].partition(" ")
    if not space:
        match = _first(name, commands)
        return value + match[len(name):] if match else None
    name = name.casefold()
    if name in RUN_COMMANDS and " " not in rest:
        match = _first(rest, run_ids, fold=False)
        return value + match[len(rest):] if match else None
    if name == "import" and root is not None:
        try:
            words = shlex.split(rest)
        except ValueError:  # an open quote: the path is being typed
            words = None
        if words is None or (len(words) <= 1 and not rest.endswith(" ")):
            path = complete_path(rest.lstrip(), root)
            return value + path[len(rest.lstrip()):] if path else None
        if len(words) == 1 or (len(words) == 2 and not rest.endswith(" ")):
            typed = "" if rest.endswith(" ") else words[1]
            match = _first(typed, IMPORT_AS)
            return value + match[len(typed):] if match else None
    return None


class CommandSuggester(Suggester):
    """The main prompt's suggester: `complete()` over the slash commands, this project's runs and files."""

    def __init__(self, commands: Sequence[str], project: Path):
        super().__init__(use_cache=False, case_sensitive=True)  # runs and files change; paths keep their case
        self.commands = list(commands)
        self.project = Path(project)

    async def get_suggestion(self, value: str) -> str | None:
        runs = servable_runs(self.project) if value.partition(" ")[0][1:].casefold() in RUN_COMMANDS else []
        return complete(value, commands=self.commands, run_ids=runs, root=self.project)
