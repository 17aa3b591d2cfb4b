"""Pilot test of the chat screen's answer-settings dialog (F6): a bad value is refused in place, a good one
comes back as GenParams. No model needed."""

from __future__ import annotations

from tuitune.core.serving.chat import GenParams
from tuitune.settings import load_settings
from tuitune.tui.app import make_app
from tuitune.tui.screens.gen_settings import GenSettings


async def test_bad_value_is_refused_then_good_values_apply(tmp_path, home):
    app = make_app(load_settings(project=tmp_path / "proj", home=home))
    results = []
    async with app.run_test(size=(100, 40)) as pilot:
        await app.push_screen(GenSettings(GenParams(seed=1)), results.append)
        await pilot.pause()
        dialog = app.screen
        dialog.query_one("#gen-max_tokens").value = "lots"
        await pilot.press("ctrl+s")
        assert app.screen is dialog and not results  # still open, nothing applied
        assert "Max tokens per answer" in str(dialog.query_one("#gen-error").render())
        dialog.query_one("#gen-max_tokens").value = "32"
        dialog.query_one("#gen-temperature").value = "0"
        dialog.query_one("#gen-seed").value = ""
        dialog.query_one("#gen-stop").focus()
        await pilot.press("enter")
        await pilot.pause()
    assert len(results) == 1
    p = results[0]
    assert (p.max_tokens, p.temperature, p.seed) == (32, 0.0, None)


async def test_escape_changes_nothing(tmp_path, home):
    app = make_app(load_settings(project=tmp_path / "proj", home=home))
    results = []
    async with app.run_test(size=(100, 40)) as pilot:
        await app.push_screen(GenSettings(GenParams()), results.append)
        await pilot.pause()
        app.screen.query_one("#gen-temperature").value = "1.5"
        await pilot.press("escape")
        await pilot.pause()
    assert results == [None]
