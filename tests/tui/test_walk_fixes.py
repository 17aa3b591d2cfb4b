"""Pilot tests for what a new user's walk through the app found (issue 21, items 3-8, 12, 13, 15, 17, 18): focus
stays on the prompt, the transcript follows new output, user and model text is shown as written, task names end
on a whole phrase, the header counts follow the project, palette commands are echoed and an export is not
overwritten unasked, and after training the guide points to the model. Fast: no model, no server, no training
(project states are built in the store and in run folders directly)."""

from __future__ import annotations

import json

import pytest
from textual.widgets import DataTable, Input, Markdown, Static

from tuitune.core.data.samples import Sample
from tuitune.core.data.store import Store
from tuitune.core.evaluation.contenders import EvalItem
from tuitune.core.evaluation.metrics import score
from tuitune.core.evaluation.report import EvalReport, ModelResult, save_report
from tuitune.core.training.config import TrainConfig
from tuitune.core.training.events import EventWriter
from tuitune.settings import load_settings
from tuitune.tui.app import make_app

RUN = "20260102-000000-lora-walk"
ANSWER = "A [service] is <b>not</b> a Pod."  # Rich markup and HTML alike must survive as text


def finished_run(project, run_id: str = RUN) -> None:
    """A run folder as the worker leaves it: config, events ending in `done`, a held-out report."""
    d = project / "runs" / run_id
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(TrainConfig(eval=True).to_yaml(), encoding="utf-8")
    items = [EvalItem([{"role": "user", "content": f"What is a [service]? ({i})"}], ANSWER) for i in range(3)]
    report = EvalReport(run_id, items, tokenizer="13a")
    for role, name, out in (("base", "smollm2", "I do not know."), ("tuned", run_id, ANSWER)):
        report.results.append(ModelResult(name, "transformers", score([out] * 3, [ANSWER] * 3), [out] * 3, 1.0,
                                          role=role))
    report.verdict = {"code": "tuned_wins", "text": "tuned beats base"}
    report.source = "verdict"  # the run's own, after training: eval/verdict.json beside report.json
    save_report(report, d)
    w = EventWriter(d)
    w.emit("started", pid=1, method="lora", base="smollm2", device="cpu", gpus=0, checkpoint=None)
    w.emit("step", step=1, max_steps=1, loss=1.0, tokens_per_second=10.0, eta_seconds=0)
    w.emit("done", step=1, metrics={}, adapter=None, merged=None)


def transcript(app) -> str:
    """Guide messages (Markdown sources) and echoed user lines (plain text), in order."""
    out = []
    for w in app.screen.query("#transcript > *"):
        if isinstance(w, Markdown):
            out.append(w.source)
        elif w.has_class("msg-user"):
            out.append(str(w.render()))
    return "\n".join(out)


def screen_text(app) -> str:
    import html
    import re

    rows: dict[float, list] = {}
    for m in re.finditer(r'<text[^>]*x="([\d.]+)" y="([\d.]+)"[^>]*>(.*?)</text>', app.export_screenshot()):
        rows.setdefault(float(m.group(2)), []).append((float(m.group(1)), html.unescape(m.group(3))))
    return "\n".join("".join(t for _, t in sorted(r)).replace("\xa0", " ") for _, r in sorted(rows.items()))


def prompt(app) -> Input:
    return app.screen.query_one("#prompt", Input)


@pytest.fixture
def project(tmp_path):
    return tmp_path / "proj"


@pytest.fixture
def app(project, home):
    return make_app(load_settings(project=project, home=home))


def seeded(project, *, pending: int = 0) -> None:
    with Store.open(project) as st:
        st.set_task(name="k8s", description="Translate Kubernetes docs")
        st.add_samples([Sample(instruction=f"seed {i}", output="o", origin="seed", status="accepted")
                        for i in range(3)])
        st.add_samples([Sample(instruction=f"p {i}", output="o", origin="synth") for i in range(pending)])
        st.conn.execute("INSERT INTO rounds (id, started_at, status) VALUES (1, '2026-01-01', 'finished')")


# ---- 3: focus ---------------------------------------------------------------------------------------------

async def test_typing_reaches_the_prompt_after_a_dialog_a_click_elsewhere_and_a_resize(app):
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f1")
        await pilot.pause()
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("h", "i")
        assert app.focused is prompt(app) and prompt(app).value == "hi"
        app.screen.query_one("#transcript").focus()  # a click on the log, or Tab
        await pilot.pause()
        await pilot.press("x")
        assert app.focused is prompt(app) and prompt(app).value == "hix"
        app.screen.query_one("#transcript").focus()
        await pilot.resize_terminal(100, 30)
        await pilot.pause()
        assert app.focused is prompt(app)


async def test_the_verdict_items_open_from_the_prompt_with_f6_and_v_stays_a_letter(app, project):
    from tuitune.tui.widgets.verdict import HeldOutItems

    seeded(project)
    finished_run(project)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("v")
        assert prompt(app).value == "v"  # typed at the prompt, v is text
        assert app.active_bindings["f6"].enabled  # shown in the footer: there is a verdict
        await pilot.press("f6")
        await pilot.pause()
        assert isinstance(app.screen, HeldOutItems)
        shown = "\n".join(str(s.render()) for s in app.screen.query(Static))
        assert "What is a [service]? (0)" in shown and ANSWER in shown
        await pilot.press("escape")
        await pilot.pause()
        assert app.focused is prompt(app)
        assert "/verdict" in transcript(app)  # the key is echoed like a typed command
        (project / "runs" / RUN / "eval" / "report.json").write_text(json.dumps({"items": []}))  # a later /eval
        await pilot.press("f6")
        await pilot.pause()
        assert ANSWER in "\n".join(str(s.render()) for s in app.screen.query(Static))  # the verdict's own answers


async def test_verdict_without_any_report_says_how_to_get_one(app):
    async with app.run_test(size=(100, 30)) as pilot:
        assert not app.screen.check_action("slash", ("verdict",))  # no F6 in the footer yet
        prompt(app).value = "/verdict"
        await pilot.press("enter")
        await pilot.pause()
        assert "no held-out answers yet" in transcript(app)


# ---- 4: the transcript follows new output ---------------------------------------------------------------------

async def test_the_transcript_follows_output_until_scrolled_up_and_pages_from_the_prompt(app):
    async with app.run_test(size=(80, 24)) as pilot:
        main = app.screen
        log = main.query_one("#transcript")
        for i in range(30):
            main.guide(f"line {i}")
        await pilot.pause()
        assert log.max_scroll_y > 0 and log.scroll_y == log.max_scroll_y
        late = Markdown("")
        main.post(late)  # a card whose table arrives later (like /eval's)
        await pilot.pause()
        await late.update("\n\n".join(f"row {i}" for i in range(20)))
        await pilot.pause()
        assert log.scroll_y == log.max_scroll_y  # still at the bottom: the table is in view
        await pilot.press("pageup")  # from the prompt
        await pilot.pause()
        assert app.focused is prompt(app) and log.scroll_y < log.max_scroll_y
        up = log.scroll_y
        main.guide("background news")  # the user reads older output: it does not jump
        await pilot.pause()
        assert log.scroll_y == up
        for _ in range(10):
            await pilot.press("pagedown")
        await pilot.pause()
        assert log.scroll_y == log.max_scroll_y
        main.guide("more")  # at the bottom again: following again
        await pilot.pause()
        assert log.scroll_y == log.max_scroll_y
        await pilot.resize_terminal(100, 20)
        await pilot.pause()
        assert log.scroll_y == log.max_scroll_y  # a resize keeps the newest output in view
        await pilot.press("pageup")
        app.action_slash("stats")  # a key or the palette: the user acts, so the answer is shown
        await pilot.pause()
        assert log.scroll_y == log.max_scroll_y and "/stats" in transcript(app)


# ---- 5, 7, 15: text shown as written; no backticks; no stray glyph; no "key: $-" ------------------------------

async def test_the_round_card_shows_brackets_and_no_stray_glyph_or_backticks(app, monkeypatch):
    from tuitune.tui.events import RoundFinished, SampleGenerated
    from tuitune.tui.widgets.round_card import RoundCard

    monkeypatch.setattr(RoundCard, "run_round", lambda self: None)  # no teacher: the events are posted here
    async with app.run_test(size=(80, 24)) as pilot:
        card = RoundCard(1)
        app.screen.post(card)
        await pilot.pause()
        card.post_message(SampleGenerated(7, "What is a [service] in Kubernetes, in a sentence or two? " * 2,
                                          ANSWER * 3, {"stored": 1}))
        card.post_message(RoundFinished(1, {"stored": 1, "status": "finished", "message": "[1/1] done"}))
        await pilot.pause()
        await pilot.pause()
        assert str(card.query_one("#round-title").render()) == "Round: 1 new sample"
        row = [str(c) for c in card.query_one(DataTable).get_row_at(0)]
        assert row[1].startswith("What is a [service] in") and row[2].startswith("A [service] is <b>")
        status = str(card.query_one("#round-status").render())
        assert "[1/1] done" in status and "Next: /review the new samples." in status and "`" not in status
        table = card.query_one(DataTable)
        assert not table.show_horizontal_scrollbar  # its thumb was the "▊" left in a finished card
        card_rows = [line for line in screen_text(app).splitlines() if line.startswith("│")]
        assert card_rows and not any(g in line for line in card_rows for g in "▊▎▉▋▌▍▏")


async def test_user_lines_task_lessons_and_eval_answers_are_shown_as_written(app, project):
    from tuitune.core.data import review
    from tuitune.core.evaluation.report import load_report
    from tuitune.tui.widgets.eval_card import card_markdown

    s = app.store.add_sample(Sample(instruction="q", output="a", origin="synth"))
    review.reject(app.store, s.id, "keep <code> and [names] as *they* are")
    async with app.run_test(size=(100, 30)) as pilot:
        prompt(app).value = "A [service] is *not* <b>this</b>"
        await pilot.press("enter")
        await pilot.pause()
        echoed = [w for w in app.screen.query(".msg-user")]
        assert str(echoed[-1].render()) == "A [service] is *not* <b>this</b>"
        assert app.store.get_task().description == "A [service] is *not* <b>this</b>"
        prompt(app).value = "/lessons"
        await pilot.press("enter")
        await pilot.pause()
        assert "keep <code> and [names] as *they* are" in screen_text(app)
    finished_run(project, "r-eval")
    md = card_markdown(_report(project / "runs" / "r-eval", load_report))
    shown = Markdown(md)
    async with make_app(load_settings(project=project, home=app.settings.home)).run_test(size=(120, 40)) as p2:
        await p2.app.screen.query_one("#transcript").mount(shown)
        await p2.pause()
        assert "A [service] is <b>not</b> a Pod." in screen_text(p2.app)


def _report(run_dir, load):
    """The saved report back as an EvalReport (what the eval card has in hand)."""
    data = load(run_dir)
    items = [EvalItem([{"role": "user", "content": it["prompt"]}], it["reference"]) for it in data["items"]]
    report = EvalReport(data["run_id"], items, tokenizer="13a")
    for role, c in data["contenders"].items():
        outs = [it["outputs"][c["model"]] for it in data["items"]]
        report.results.append(ModelResult(c["model"], "transformers", score(outs, [i.reference for i in items]),
                                          outs, 1.0, role=role))
    return report


async def test_settings_shows_no_key_for_the_embedded_teacher(app):
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("f5")
        await pilot.pause()
        rows = str(app.screen.query_one("#teacher-list").render())
        assert "$-" not in rows and "no key" in rows


async def test_a_waiting_notice_shows_a_file_name_with_brackets(app):
    async with app.run_test(size=(100, 30)) as pilot:
        app.tell_waiting("Waiting for the import of data[1].json to finish")
        await pilot.pause()
        (note,) = app._notifications
        assert note.message.endswith("data[1].json to finish") and note.markup is False  # not read as markup


# ---- 8: the task name --------------------------------------------------------------------------------------------

async def test_the_task_typed_as_a_sentence_is_named_at_a_phrase_boundary(app):
    sentence = "Translate Kubernetes documentation from English to Chinese, keeping code and names as they are"
    async with app.run_test(size=(80, 24)) as pilot:
        prompt(app).value = sentence
        await pilot.press("enter")
        await pilot.pause()
        task = app.store.get_task()
    assert task.name == "Translate Kubernetes documentation from English" and task.description == sentence


# ---- 12, 13: the header counts --------------------------------------------------------------------------------

async def test_the_header_counts_follow_every_change_to_the_project(app, project):
    seeded(project, pending=13)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert app.sub_title.startswith("16 samples · 1 round · ")  # "1 round", not "1 rounds"
        with Store.open(project) as other:  # a seed saved from chat, a round's worker, the CLI elsewhere
            other.add_sample(Sample(instruction="from chat", output="a", origin="seed", status="accepted"))
        for _ in range(30):
            await pilot.pause(0.1)
            if app.sub_title.startswith("17 samples"):
                break
        assert app.sub_title.startswith("17 samples · ")
        app.store.add_sample(Sample(instruction="on this connection", output="a", origin="seed"))
        await pilot.press("f1")  # any screen change counts again at once
        await pilot.press("escape")
        await pilot.pause()
        assert app.sub_title.startswith("18 samples · ")
        assert "18 samples" in screen_text(app)


async def test_stats_and_import_say_one_in_the_singular(app, tmp_path):
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps({"instruction": "q", "output": "a"}) + "\n")
    async with app.run_test(size=(100, 30)) as pilot:
        for line in (f"/import {one}", "/stats"):
            prompt(app).value = line
            await pilot.press("enter")
            await pilot.pause()
        text = transcript(app)
    assert "Imported **1** record (alpaca)" in text and "**1 sample**, 0 rounds, 0 exact duplicates" in text


# ---- 17: palette commands are echoed; an export is not overwritten unasked ----------------------------------------

async def test_a_palette_command_is_echoed_and_an_export_asks_before_overwriting(app, project):
    from tuitune.tui.screens.confirm import Confirm

    app.store.add_sample(Sample(instruction="q", output="a", origin="seed", status="accepted"))
    out = project / "exports" / "alpaca.json"
    async with app.run_test(size=(100, 30)) as pilot:
        export = next(c for c in app.get_system_commands(app.screen) if c.title.startswith("/export"))
        export.callback()  # what choosing it in the palette runs
        await pilot.pause()
        assert out.exists() and "/export\nExported (alpaca)" in transcript(app)
        out.write_text("[]  hand edited", encoding="utf-8")
        export.callback()
        await pilot.pause()
        assert isinstance(app.screen, Confirm)
        await pilot.press("n")
        await pilot.pause()
        assert out.read_text(encoding="utf-8") == "[]  hand edited" and "Not exported" in transcript(app)
        assert app.focused is prompt(app)
        export.callback()
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert json.loads(out.read_text(encoding="utf-8"))[0]["instruction"] == "q"
        help_cmd = next(c for c in app.get_system_commands(app.screen) if c.title == "/help")
        help_cmd.callback()
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert transcript(app).rstrip().endswith("/help")  # /help's line, not the export's output, is last


# ---- 18: after training the guide points to the model ------------------------------------------------------------

async def test_after_training_the_guide_points_to_chat_eval_and_export(app, project):
    seeded(project, pending=2)
    finished_run(project)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        text = transcript(app)
        assert "Next: Try the model." in text and "Next: Review" not in text
        assert all(c in text for c in ("`/chat`", "`/eval`", "`/export`"))
        assert "2 samples wait for review" in text


def test_markdown_helpers_keep_text_whole():
    from markdown_it import MarkdownIt

    from tuitune.tui.text import md_code, md_escape

    md = MarkdownIt("gfm-like")
    text = "a `tick` <b> *x* [y](z) | 1. k8s.io"
    (para,) = [t for t in md.parse(md_escape(text)) if t.type == "inline"]
    assert {c.type for c in para.children} == {"text"} and "".join(c.content for c in para.children) == text
    (code,) = [c for t in md.parse(md_code("run `a`-b")) if t.type == "inline" for c in t.children]
    assert code.type == "code_inline" and code.content == "run `a`-b"
