"""Helpers shared by the sub-commands: the project store, error display, progress bars."""

from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path

import click

from tuitune.settings import Settings


def settings(ctx: click.Context) -> Settings:
    return ctx.find_root().obj


def open_store(ctx: click.Context, *, create: bool = False):
    from tuitune.core.data.store import Store, StoreError

    try:
        return Store.open(settings(ctx).project, create=create, on_wait=lambda m: click.echo(m, err=True))
    except StoreError as e:
        fail(str(e), code=2)


_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20, "mib": 2**20,
          "g": 2**30, "gb": 2**30, "gib": 2**30}


def parse_size(text: str, option: str = "--max-size") -> int:
    """'512M', '2G', '1.5GiB' or a plain number of bytes -> bytes (binary units). Exit 2 on anything else."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text or "")
    if not m or m.group(2).lower() not in _UNITS or float(m.group(1)) <= 0:
        fail(f"{option} {text!r}: expected a size such as 800M or 2G", code=2)
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def database_failure(ctx: click.Context, error: Exception) -> str | None:
    """The message for a project-database error that reached the top of a command (None: not one)."""
    import sqlite3

    from tuitune.core.data.store import DB_NAME, StoreError, damaged

    if isinstance(error, StoreError):
        return str(error)
    if isinstance(error, sqlite3.DatabaseError):
        project = getattr(ctx.find_root().obj, "project", None)
        return str(damaged(project / DB_NAME if project else Path(DB_NAME), error))
    return None


def fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@contextlib.contextmanager
def progress_bar(description: str, total: float | None = 1.0):
    """A rich progress bar on stderr; yields update(description, completed)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=False) as prog:
        task_id = prog.add_task(description, total=total)

        def update(desc: str | None = None, completed: float | None = None) -> None:
            prog.update(task_id, **({"description": desc} if desc else {}),
                        **({"completed": completed} if completed is not None else {}))

        yield update
