"""Helpers shared by the sub-commands: the project store, error display, progress bars."""

from __future__ import annotations

import contextlib
import sys

import click

from tuitune.settings import Settings


def settings(ctx: click.Context) -> Settings:
    return ctx.find_root().obj


def open_store(ctx: click.Context, *, create: bool = False):
    from tuitune.core.data.store import Store, StoreError

    try:
        return Store.open(settings(ctx).project, create=create)
    except StoreError as e:
        fail(str(e))


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
