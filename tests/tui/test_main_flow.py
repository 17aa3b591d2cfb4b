"""Pilot tests of the main screen: the guide, slash commands, forms, palette entries. Fast (no model)."""

from __future__ import annotations

import asyncio
import json

import pytest

from tuitune.core.data.samples import Sample
from tuitune.settings import load_settings
from tuitune.tui.app import make_app


def transcript_text(app) -> str:
    from textual.widgets import Markdown

    return "\n".join(m.source for m in app.screen.query(Markdown))


async def type_text(pilot, text: str) -> None:
    for ch in text:
        await pilot.press({" ": "space", "/": "slash", ":": "colon", ".": "full_stop"}.get(ch, ch))


async def submit(pilot, text: str) -> None:
    inp = pilot.app.screen.query_one("#prompt")
    inp.value = text  # typing char by char is covered by the first test
    await pilot.press("enter")
    await pilot.pause()




@pytest.fixture
def app(tmp_path, home):
    return make_app(load_settings(project=tmp_path / "proj", home=home))


async def test_guide_walks_from_task_to_seeds_to_first_round(app, tmp_path):
    async with app.run_test(size=(80, 24)) as pilot:
        assert "Next: Describe the task" in transcript_text(app)
        await type_text(pilot, "Translate Kubernetes docs to Chinese")
        await pilot.press("enter")
        await pilot.pause()
        assert app.store.get_task().description == "Translate Kubernetes docs to Chinese"
        assert "Next: Add seed examples" in transcript_text(app)
        # seeds through the form
        for i in range(3):
            await submit(pilot, "/seed")
            form = app.screen
            form.query_one("#instruction").text = f"Translate: pod {i}"
            form.query_one("#output").text = f"容器组 {i}"
            await pilot.press("ctrl+s")
            await pilot.pause()
        assert app.store.count(origin="seed") == 3
        assert "Next: First round" in transcript_text(app) and "/gen 20" in transcript_text(app)


async def test_seed_form_refuses_empty_output(app):
    async with app.run_test(size=(80, 24)) as pilot:
        await submit(pilot, "/seed")
        app.screen.query_one("#instruction").text = "q"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "output must not be empty" in str(app.screen.query_one("#seed-error").render())
        await pilot.press("escape")
        assert app.store.count() == 0


async def test_import_errors_and_success_show_in_transcript(app, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"instruction": "a"}]))
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(json.dumps({"instruction": f"q{i}", "output": "a"}) for i in range(4)))
    async with app.run_test(size=(100, 30)) as pilot:
        await submit(pilot, f"/import {bad}")
        assert "nothing imported" in transcript_text(app) and "record [0]: output: missing" in transcript_text(app)
        assert "tuitune import --skip-invalid" in transcript_text(app)  # the way past it, in the TUI's words
        await submit(pilot, f"/import {good} seeds")
        assert "Imported **4** records (alpaca) as seeds" in transcript_text(app)
        assert app.store.count(origin="seed") == 4
        await submit(pilot, "/stats")
        assert "**4 samples**" in transcript_text(app)


async def test_unknown_command_suggests(app):
    async with app.run_test(size=(80, 24)) as pilot:
        await submit(pilot, "/exprot")
        assert "unknown command `/exprot`" in transcript_text(app) and "`/export`" in transcript_text(app)


async def test_lessons_and_export(app, tmp_path):
    from tuitune.core.data import review

    s1 = app.store.add_sample(Sample(instruction="q", output="a", origin="synth"))
    s2 = app.store.add_sample(Sample(instruction="q2", output="a2", origin="synth"))
    review.reject(app.store, s1.id, "answer in Chinese")
    review.accept(app.store, s2.id)
    async with app.run_test(size=(100, 30)) as pilot:
        await submit(pilot, "/lessons")
        assert "- answer in Chinese" in transcript_text(app)
        await submit(pilot, "/export sharegpt")
        out = app.settings.project / "exports" / "sharegpt.json"
        assert json.loads(out.read_text())[0]["conversations"][0]["value"] == "q2"
        assert "read by:" in transcript_text(app)  # the summary says which tools read the format
        await submit(pilot, "/export nope")
        assert "expected one of alpaca" in transcript_text(app)
        await submit(pilot, "/export alpaca 1.5")
        assert "test size '1.5'" in transcript_text(app)
        assert not (app.settings.project / "exports" / "alpaca").exists()


async def test_help_screen_and_theme_toggle(app):
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f1")
        await pilot.pause()
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("escape")
        dark = app.theme
        await pilot.press("ctrl+t")
        assert app.theme != dark


async def test_palette_lists_every_slash_command(app):
    from tuitune.tui.slash import SLASH_COMMANDS

    async with app.run_test(size=(80, 24)):
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {s.usage for s in SLASH_COMMANDS} <= titles


async def test_settings_saves_a_teacher_without_its_key(app, monkeypatch):
    monkeypatch.setenv("MY_TEACHER_KEY", "sk-secret-value")
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("f5")
        await pilot.pause()
        scr = app.screen
        scr.query_one("#t-name").value = "deepseek"
        scr.query_one("#t-url").value = "http://127.0.0.1:9/v1"
        scr.query_one("#t-model").value = "deepseek-chat"
        scr.query_one("#t-key").value = "MY_TEACHER_KEY"
        await pilot.press("ctrl+s")
        await pilot.pause()
    saved = (app.settings.home / "teachers.yaml").read_text()
    assert "deepseek-chat" in saved and "MY_TEACHER_KEY" in saved and "sk-secret-value" not in saved


async def test_train_form_reports_too_little_data_and_creates_nothing(app):
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        assert type(app.screen).__name__ == "TrainScreen"
        app.screen.query_one("#opt-epochs").value = "two"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "epochs: 'two' is not a number" in str(app.screen.query_one("#train-error").render())
        app.screen.query_one("#opt-epochs").value = "-1"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "epochs: Input should be greater than 0" in str(app.screen.query_one("#train-error").render())
        app.screen.query_one("#opt-epochs").value = ""
        await pilot.press("ctrl+s")
        await app.workers.wait_for_complete()
        await pilot.pause()
        err = str(app.screen.query_one("#train-error").render())
        assert type(app.screen).__name__ == "TrainScreen" and err and "Checking" not in err
    assert not (app.settings.project / "runs").exists() or not any((app.settings.project / "runs").iterdir())


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_main_screen_snapshot(snap_compare, tmp_path, size):
    from tuitune.core.data.store import Store

    proj = tmp_path / "proj"
    with Store.open(proj) as st:
        st.set_task(name="k8s-zh", description="Translate Kubernetes docs from English to Chinese")
        st.add_samples([Sample(instruction=f"Translate: term {i}", output=f"术语 {i}", origin="seed",
                               status="accepted") for i in range(3)])
    app = make_app(load_settings(project=proj, home=tmp_path / "home"))
    app.sub_title = "demo project"  # the temp path changes every run

    async def run_before(pilot):
        for screen in app.screen_stack:
            for w in screen.query("Markdown"):
                if "tuitune** — project" in w.source:
                    await w.update("**tuitune** — project `demo` (its counts are in the header)")  # before the shot
        for inp in app.screen.query("Input"):
            inp.cursor_blink = False  # a blinking cursor made the shot depend on timing
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_train_form_snapshot(snap_compare, tmp_path, home, size):
    app = make_app(load_settings(project=tmp_path / "proj", home=home))
    app.sub_title = "demo project"
    async def run_before(pilot):
        await pilot.press("f3")
        await pilot.pause()
        while app.screen.preview_state == "pending":  # the preview of the resolved settings settles first
            await asyncio.sleep(0.05)
        for inp in app.screen.query("Input"):
            inp.cursor_blink = False  # the shot must not depend on the blink's timing
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("broken", ["teachers: [1, 2, 3]\n", "teachers: {a: [unclosed\n"])
async def test_settings_opens_on_a_broken_teachers_file_and_fixes_it(tmp_path, home, broken):
    (home / "teachers.yaml").write_text(broken)
    app = make_app(load_settings(project=tmp_path / "proj", home=home))
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("f5")
        await pilot.pause()
        assert type(app.screen).__name__ == "SettingsScreen"
        problem = str(app.screen.query_one("#teachers-problem").render())
        assert "teachers.yaml" in problem and "add a teacher below" in problem
        for wid, value in (("#t-name", "local"), ("#t-url", "http://127.0.0.1:9/v1"), ("#t-model", "m")):
            app.screen.query_one(wid).value = value
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert str(app.screen.query_one("#teachers-problem").render()) == ""
        assert "local" in str(app.screen.query_one("#teacher-list").render())
    assert (home / "teachers.yaml.broken").read_text() == broken  # the user's file is kept, not lost
    assert app.return_code in (0, None)


def test_a_crash_in_the_app_exits_non_zero(tmp_path, home, monkeypatch):
    from click.testing import CliRunner

    from tuitune.cli import main
    from tuitune.tui.app import TuituneApp
    from tuitune.tui.screens.main import MainScreen

    def boom(self):
        raise RuntimeError("boom")

    monkeypatch.setenv("TUITUNE_HOME", str(home))
    monkeypatch.setattr(MainScreen, "compose", boom)
    real_run = TuituneApp.run
    monkeypatch.setattr(TuituneApp, "run", lambda self, **kw: real_run(self, headless=True, **kw))
    r = CliRunner().invoke(main, ["--project", str(tmp_path / "proj")])
    assert r.exit_code != 0


async def test_the_seed_example_wraps_at_80_columns(tmp_path, home):
    import html
    import re

    from tuitune.core.data.store import Store

    with Store.open(tmp_path / "proj") as st:
        st.set_task(name="k8s-zh", description="Translate Kubernetes docs from English to Chinese")
    app = make_app(load_settings(project=tmp_path / "proj", home=home))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        svg = app.export_screenshot()
    rows: dict[float, list] = {}
    for m in re.finditer(r'<text[^>]*x="([\d.]+)" y="([\d.]+)"[^>]*>(.*?)</text>', svg):
        rows.setdefault(float(m.group(2)), []).append((float(m.group(1)), html.unescape(m.group(3))))
    text = " ".join("".join(t for _, t in sorted(r)) for _, r in sorted(rows.items())).replace("\xa0", " ")
    text = re.sub(r"[█▌▐▊▎\s]+", " ", text)
    assert "create and manage in" in text and "Kubernetes." in text  # nothing cut at the right edge


async def test_the_app_starts_and_lists_runs_with_garbage_in_events(tmp_path, home):
    from tuitune.core.training.config import TrainConfig

    run = tmp_path / "proj" / "runs" / "20260101-000000-lora-abcd"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(TrainConfig(max_steps=4).to_yaml())
    (run / "events.jsonl").write_bytes(b'null\n[1,2,3]\n{"event": "step"}\n\xff\xfe\n{"event": "step", "step": 1, '
                                       b'"loss": "abc"}\n{"event": "done", "step": 4}\n{"event": "st')
    app = make_app(load_settings(project=tmp_path / "proj", home=home))
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.pause()
        app.screen.run_command("/runs")
        await pilot.pause()
        text = " ".join(str(w.render()) for w in app.screen.query("Static, Markdown"))
        assert "20260101-000000-lora-abcd" in " ".join(getattr(w, "source", "") for w in app.screen.query("Markdown")) \
            or "20260101-000000-lora-abcd" in text
    assert app.return_code in (0, None)


async def test_a_write_that_waits_for_another_process_says_so(tmp_path, home):
    import asyncio
    import sqlite3

    app = make_app(load_settings(project=tmp_path / "proj", home=home))
    other = sqlite3.connect(app.store.path, isolation_level=None)  # another process holding the write lock
    other.execute("BEGIN IMMEDIATE")
    async with app.run_test(size=(100, 32)) as pilot:
        write = asyncio.create_task(asyncio.to_thread(app.store.set_task, name="waited"))
        for _ in range(100):
            await pilot.pause(0.1)
            if any("Waiting for another tuitune process" in str(n.message) for n in app._notifications):
                break
        assert any("Waiting for" in str(n.message) for n in app._notifications)
        assert not write.done()  # still waiting, not failed
        other.execute("COMMIT")
        await write
    other.close()
    from tuitune.core.data.store import Store

    with Store.open(tmp_path / "proj") as st:
        assert st.get_task().name == "waited"
