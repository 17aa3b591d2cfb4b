"""`/serve` is not a TUI command (issue 10: it only opened the chat). The app starts the servers it needs for
/chat, /compare, /eval and /gen itself; serving for other programs is `tuitune serve` in a shell."""

from __future__ import annotations

from textual.widgets import Markdown

from tuitune.settings import load_settings
from tuitune.tui.app import make_app
from tuitune.tui.slash import BY_NAME, help_markdown


async def test_serve_is_not_a_command(tmp_path, home):
    assert "serve" not in BY_NAME and "/serve" not in help_markdown()
    app = make_app(load_settings(project=tmp_path / "proj", home=home))
    async with app.run_test(size=(80, 24)) as pilot:
        app.screen.query_one("#prompt").value = "/serve"
        await pilot.press("enter")
        await pilot.pause()
        assert "unknown command `/serve`" in "\n".join(m.source for m in app.screen.query(Markdown))
        assert not app.engines.running()  # nothing was started
