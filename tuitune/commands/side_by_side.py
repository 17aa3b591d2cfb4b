"""`tuitune chat A B ...` in a terminal: every model's answer streams live in its own column.

Only used when stdout is a terminal; piped output gets the collected answers, one `[model] answer` line each.
"""

from __future__ import annotations


def _table(texts: dict[str, str], errors: dict[str, str]):
    from rich.table import Table
    from rich.text import Text

    table = Table(expand=True, show_lines=False, pad_edge=False)
    for name in texts:
        table.add_column(Text(name, style="bold"), ratio=1, overflow="fold")
    cells = []
    for name, text in texts.items():
        cell = Text(text)  # model output is plain text: never read as Rich markup
        if name in errors:
            cell.append(f"\n[error: {errors[name]}]", style="red")
        cells.append(cell)
    table.add_row(*cells)
    return table


async def stream_side_by_side(backends, prompt: str, **kw) -> dict[str, str]:
    """Stream `compare()` into live columns; returns model name -> answer, or raises the first model's error
    once every model has finished (the others' answers stay on screen)."""
    from rich.console import Console
    from rich.live import Live

    from tuitune.core.serving.chat import compare

    texts = {b.name: "" for b in backends}
    errors: dict[str, str] = {}
    first_error: Exception | None = None
    with Live(_table(texts, errors), console=Console(), refresh_per_second=8, auto_refresh=True) as live:
        async for ev in compare(backends, prompt, **kw):
            texts[ev.model] += ev.delta
            if ev.error is not None:
                errors[ev.model] = str(ev.error)
                first_error = first_error or ev.error
            live.update(_table(texts, errors))
    if first_error is not None:
        raise first_error
    return texts
