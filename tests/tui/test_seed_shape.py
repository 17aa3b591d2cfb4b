"""Item 20 of the walk: a seed saved from chat keeps the task's shape (the seeds' fixed instruction, the message
as input), its dialog's fields are multi-line and editable, the /seed form has a title (and starts with the
seeds' instruction), the review edit dialog is multi-line, and the main prompt completes run ids and paths.
Real project seeds (data/k8s_docs_en_zh.json through the real importer), real SQLite; no model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import TextArea

from tuitune.core.data.importing import import_file
from tuitune.core.data.store import Store
from tuitune.settings import load_settings
from tuitune.tui.app import make_app
from tuitune.tui.completion import complete, complete_path, servable_runs
from tuitune.tui.screens.review_dialogs import EditScreen
from tuitune.tui.screens.save_exchange import SaveExchange, SeedShape, seed_shape
from tuitune.tui.screens.seed import SeedForm

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "data" / "k8s_docs_en_zh.json"
INSTRUCTION = json.loads(K8S.read_text(encoding="utf-8"))[0]["instruction"]
SENTENCE = "A DaemonSet ensures that all Nodes run a copy of a Pod."


@pytest.fixture
def k8s_project(tmp_path):
    project = tmp_path / "proj"
    store = Store.open(project)
    store.set_task(name="k8s-zh", description="Translate Kubernetes docs into Chinese", system_prompt="Translate.")
    import_file(store, K8S, as_="seeds")
    yield project, store
    store.close()


def test_the_shape_of_real_seeds(k8s_project, real_fixtures):
    _, store = k8s_project
    shape = seed_shape(store.samples(origin="seed"))
    assert shape.fixed == INSTRUCTION
    assert shape.split(SENTENCE) == (INSTRUCTION, SENTENCE)
    assert shape.split(f"{INSTRUCTION}\n{SENTENCE}") == (INSTRUCTION, SENTENCE)  # the instruction typed too
    assert shape.split(f"{INSTRUCTION.lower().rstrip('.')}: {SENTENCE}") == (INSTRUCTION, SENTENCE)
    # seeds that put the whole request in the instruction (Stanford Alpaca's seed tasks, mostly without input)
    from tuitune.core.data.samples import Sample

    tasks = [json.loads(line) for line in (real_fixtures / "stanford_alpaca_seed_tasks.jsonl").read_text(
        encoding="utf-8").splitlines()[:20]]
    alpaca = [Sample(t["instruction"], t["instances"][0]["output"], input=t["instances"][0]["input"]) for t in tasks]
    assert seed_shape(alpaca) == SeedShape()
    assert SeedShape().split(" What is a Pod? ") == ("What is a Pod?", "")


async def test_a_chat_exchange_is_saved_as_a_seed_in_the_seeds_shape(k8s_project, tmp_path):
    project, store = k8s_project
    app = make_app(load_settings(project=project, home=tmp_path / "home"))
    results: list = []
    answer = "DaemonSet 确保所有节点运行 Pod"
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(SaveExchange(SENTENCE, answer, history=[("Translate: Pod", "Pod")]), results.append)
        await pilot.pause()
        dialog = app.screen
        areas = {a.id: a for a in dialog.query(TextArea)}
        assert set(areas) == {"save-instruction", "save-input", "corrected"}  # every text field is multi-line
        assert areas["save-instruction"].text == INSTRUCTION and areas["save-input"].text == SENTENCE
        assert dialog.focused is areas["corrected"]
        assert dialog.query_one("#save-history").value is False  # the seeds have no history: off by default
        areas["corrected"].text = "DaemonSet 确保所有（或部分）节点运行一个 Pod 的副本。\n"
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert len(results) == 1
    seed = store.get_sample(results[0].id)
    assert (seed.instruction, seed.input) == (INSTRUCTION, SENTENCE)
    assert seed.output == "DaemonSet 确保所有（或部分）节点运行一个 Pod 的副本。"
    assert seed.original == {"output": answer}  # the model's answer: the rejected side of a preference pair
    assert (seed.origin, seed.status, seed.system, seed.history) == ("seed", "accepted", "Translate.", [])


async def test_an_empty_answer_is_refused_in_the_dialog(k8s_project, tmp_path):
    project, store = k8s_project
    before = store.count(origin="seed")
    app = make_app(load_settings(project=project, home=tmp_path / "home"))
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(SaveExchange(SENTENCE, "  "))
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, SaveExchange)
        assert "answer must not be empty" in str(app.screen.query_one("#save-error").render())
    assert store.count(origin="seed") == before


async def test_seed_form_has_a_title_and_the_seeds_instruction(k8s_project, tmp_path):
    project, _ = k8s_project
    app = make_app(load_settings(project=project, home=tmp_path / "home"))
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(SeedForm(system="Translate."))
        await pilot.pause()
        form = app.screen
        assert form.query_one("#seed-form").border_title == "New seed example"
        assert form.query_one("#instruction", TextArea).text == INSTRUCTION
        assert form.focused is form.query_one("#input")  # the text to translate comes next


async def test_review_edit_fields_are_multi_line(k8s_project, tmp_path):
    project, store = k8s_project
    sample = store.samples(origin="seed")[0].with_(input="line one\nline two")
    app = make_app(load_settings(project=project, home=tmp_path / "home"))
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(EditScreen(sample))
        await pilot.pause()
        for name in EditScreen.FIELDS:
            area = app.screen.query_one(f"#edit-{name}", TextArea)
            assert area.text == getattr(sample, name)
        assert app.screen.query_one("#edit-input", TextArea).document.line_count == 2


def test_completion_of_commands_run_ids_and_paths(tmp_path):
    project = tmp_path / "proj"
    (project / "data").mkdir(parents=True)
    (project / "data" / "k8s seeds.json").write_text("[]")
    (project / "data" / "k8s.jsonl").write_text("")
    for run, kind in (("20260101-090000-a", "adapter/adapter_config.json"), ("20260102-090000-b", "merged/config.json"),
                      ("20260103-090000-c", "events.jsonl")):  # c has nothing to serve yet
        (project / "runs" / run / kind).parent.mkdir(parents=True, exist_ok=True)
        (project / "runs" / run / kind).write_text("{}")
    runs = servable_runs(project)
    assert runs == ["20260102-090000-b", "20260101-090000-a"]  # newest first; c is left out
    commands = ["chat", "compare", "eval", "export", "import"]
    assert complete("/co", commands=commands) == "/compare"
    assert complete("/Ch", commands=commands) == "/Chat"
    assert complete("/chat ", commands=commands, run_ids=runs) == "/chat 20260102-090000-b"
    assert complete("/eval 20260101", commands=commands, run_ids=runs) == "/eval 20260101-090000-a"
    assert complete("/compare x", commands=commands, run_ids=runs) is None
    assert complete("/import da", commands=commands, root=project) == "/import data/"
    assert complete("/import data/k", commands=commands, root=project) == "/import data/k8s.jsonl"  # no space
    assert complete('/import "data/k8s ', commands=commands, root=project) == '/import "data/k8s seeds.json"'
    assert complete("/import data/k8s.jsonl s", commands=commands, root=project) == "/import data/k8s.jsonl seeds"
    assert complete("/import data/k8s.jsonl ", commands=commands, root=project) == "/import data/k8s.jsonl seeds"
    absolute = str(project / "data") + "/k8s.j"
    assert complete_path(absolute, tmp_path) == absolute + "sonl"
    assert complete("hello", commands=commands) is None
