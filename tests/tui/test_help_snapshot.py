"""/help at 80x24: the commands (a `|` inside a usage must not split anything off) and the keys."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from tuitune.settings import load_settings
from tuitune.tui.app import make_app
from tuitune.tui.slash import SLASH_COMMANDS, help_markdown


def test_every_command_is_one_whole_help_item():
    tokens = MarkdownIt("gfm-like").parse(help_markdown())  # the parser Textual's Markdown uses
    items = [t.content for t in tokens if t.type == "inline"][1:]  # after the "Commands" heading line
    assert len(items) == len(SLASH_COMMANDS)
    for s, item in zip(SLASH_COMMANDS, items, strict=True):
        assert item.startswith(f"`{s.usage}` — ") and item.endswith(s.help)  # `|` and all, nothing split off


def test_eval_and_verdict_work_without_a_run_id():
    by_name = {s.name: s for s in SLASH_COMMANDS}
    assert by_name["eval"].usage == "/eval [RUN_ID]" and not by_name["eval"].needs_arg
    assert not by_name["verdict"].needs_arg and by_name["import"].needs_arg


@pytest.mark.xdist_group("help_snapshot")  # both cases use (and first delete) the one fixed project folder
@pytest.mark.parametrize("keys", [(), ("pagedown",)], ids=["top", "page2"])
def test_help_snapshot(snap_compare, home, keys):
    # The transcript behind the dialog starts with the project's path: one of fixed length, or pytest's numbered
    # temp folders (pytest-9 -> pytest-10) move its line breaks and the picture with them.
    project = Path(tempfile.gettempdir()) / "tuitune-help-snapshot" / "proj"
    shutil.rmtree(project.parent, ignore_errors=True)
    app = make_app(load_settings(project=project, home=home))
    app.sub_title = "demo project"  # the temp path changes every run

    async def run_before(pilot):
        await pilot.press("f1")
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()  # the echoed /help settles behind the dialog: the same picture every run
        await pilot.press(*keys)  # page 2: /export with its | in the usage, the keys
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
