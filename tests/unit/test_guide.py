"""The guide's next step and the task name it makes from the user's sentence (core, no UI)."""

from __future__ import annotations

import pytest

from tuitune.core.data.samples import Sample
from tuitune.core.guide import TASK_NAME_WIDTH, _width, next_step, task_name


@pytest.mark.parametrize(("sentence", "name"), [
    # the walk's sentence: cut at a phrase boundary, whole words, no dangling "from"
    ("Translate Kubernetes documentation from English to Chinese, keeping code and resource names as they are",
     "Translate Kubernetes documentation from English"),
    ("Translate Kubernetes documentation sentences from English to Chinese",
     "Translate Kubernetes documentation sentences"),
    ("Answer questions about chronic diseases. Be kind and careful.", "Answer questions about chronic diseases"),
    ("Summarize (in one line) support tickets", "Summarize support tickets"),
    ("Write SQL for the user - short and correct", "Write SQL for the user"),
    ("Translate docs from k8s.io into Chinese", "Translate docs from k8s.io into Chinese"),
    ("e.g. translate docs. More text", "e.g. translate docs"),
    ("把 Kubernetes 文档从英文翻译成中文，保留代码和资源名", "把 Kubernetes 文档从英文翻译成中文"),
    ("Clean up", "Clean up"),
])
def test_task_name_ends_at_a_phrase_boundary(sentence, name):
    assert task_name(sentence) == name


def test_task_name_never_ends_on_a_preposition_and_fits_its_width():
    long = "Rewrite the release notes of every project for the customers in a friendly tone with examples"
    got = task_name(long)
    assert _width(got) <= TASK_NAME_WIDTH and long.startswith(got)
    assert got.split()[-1] not in {"for", "the", "in", "a", "with", "of"}
    assert got == "Rewrite the release notes of every project"


def test_task_name_cuts_text_without_spaces_at_its_width():
    zh = "把Kubernetes文档从英文翻译成中文并且保留所有的代码块和资源名称不要翻译它们"
    got = task_name(zh)
    assert got.endswith("…") and _width(got) <= TASK_NAME_WIDTH and zh.startswith(got[:-1])


def _project(store, *, seeds=3, pending=0, accepted=0, rounds=1):
    store.set_task(name="k8s", description="Translate Kubernetes docs")
    store.add_samples([Sample(instruction=f"s{i}", output="o", origin="seed", status="accepted") for i in range(seeds)])
    store.add_samples([Sample(instruction=f"p{i}", output="o", origin="synth") for i in range(pending)])
    store.add_samples([Sample(instruction=f"a{i}", output="o", origin="synth", status="accepted")
                       for i in range(accepted)])
    for rid in range(1, rounds + 1):
        store.conn.execute("INSERT INTO rounds (id, started_at, status) VALUES (?, '2026-01-01', 'finished')", (rid,))


def test_after_training_the_guide_points_to_chat_eval_and_export(store):
    _project(store, pending=2, accepted=30)
    assert next_step(store).key == "review"  # before any run: review what waits
    step = next_step(store, runs_done=1)
    assert step.key == "chat" and step.title == "Try the model"
    for command in ("/chat", "/compare", "/eval", "/export"):
        assert command in step.message
    assert "2 samples wait for review" in step.message  # still said, but not as the next step


def test_after_training_on_imported_data_without_rounds(store):
    _project(store, seeds=0, accepted=40, rounds=0)
    assert next_step(store, runs_done=1).key == "chat"  # not "Add seed examples" or "First round"


def test_counts_in_the_guide_are_singular_for_one(store):
    _project(store, pending=1)
    assert "1 sample waits for review" in next_step(store).message
    store.conn.execute("UPDATE samples SET status = 'accepted'")
    assert next_step(store).message.startswith("4 examples kept")  # seeds are stored as accepted: counted once
