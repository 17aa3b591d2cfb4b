"""The task's system prompt reaches every export format and the training data (rendered by the base model's
chat template); a record's own system prompt wins."""

from __future__ import annotations

import json

from tuitune.core.data import review
from tuitune.core.data.export import export
from tuitune.core.data.samples import Sample
from tuitune.core.training.data import project_records, tokenize_chat

TASK = "You translate Kubernetes documentation into Simplified Chinese."
OWN = "You are a terse glossary."


def fill(store):
    store.set_task(name="k8s", system_prompt=TASK)
    store.add_samples([Sample(instruction=f"Translate: term {i}", output=f"术语 {i}", status="accepted")
                       for i in range(4)])
    store.add_sample(Sample(instruction="Translate: pod", output="Pod", system=OWN, status="accepted"))
    good = store.add_sample(Sample(instruction="Translate: node", output="节点", origin="synth"))
    bad = store.add_sample(Sample(instruction="Translate: node", output="node", origin="synth"))
    review.accept(store, good.id)
    review.reject(store, bad.id, "not translated")


def systems(rows, fmt):
    if fmt == "openai":
        return [r["messages"][0]["content"] if r["messages"][0]["role"] == "system" else "" for r in rows]
    return [r.get("system", "") for r in rows]


def test_task_system_prompt_in_every_export_format(store, tmp_path):
    fill(store)
    for fmt in ("alpaca", "sharegpt", "openai"):
        res = export(store, fmt, tmp_path / fmt)
        path = res.files["all"]
        rows = ([json.loads(line) for line in path.read_text().splitlines()] if path.suffix == ".jsonl"
                else json.loads(path.read_text()))
        got = systems(rows, fmt)
        assert got.count(TASK) == 5 and got.count(OWN) == 1 and len(got) == 6, (fmt, got)
    res = export(store, "dpo", tmp_path / "dpo")
    assert [r["system"] for r in json.loads(res.files["all"].read_text())] == [TASK]
    trl = [json.loads(line) for line in res.files["trl"].read_text().splitlines()]
    assert trl[0]["prompt"][0] == {"role": "system", "content": TASK}
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert info["tuitune"]["columns"]["system"] == "system" and info["tuitune_dpo"]["columns"]["system"] == "system"


def test_training_data_renders_the_task_system_prompt(store, project, embedded_model):
    from transformers import AutoTokenizer

    fill(store)
    records = project_records(project, "lora")
    by_prompt = {r["messages"][-2]["content"]: r["messages"] for r in records}
    assert by_prompt["Translate: term 0"][0] == {"role": "system", "content": TASK}
    assert by_prompt["Translate: pod"][0] == {"role": "system", "content": OWN}  # its own wins
    tok = AutoTokenizer.from_pretrained(embedded_model)
    ids, labels = tokenize_chat(tok, by_prompt["Translate: term 0"])
    text = tok.decode(ids)
    assert TASK in text and text.index(TASK) < text.index("Translate: term 0")
    assert TASK not in tok.decode([t for t in labels if t != -100])  # the system prompt is not trained on
    ids, _ = tokenize_chat(tok, by_prompt["Translate: pod"])
    assert OWN in tok.decode(ids) and TASK not in tok.decode(ids)
    pairs = project_records(project, "dpo")
    assert pairs and all(p["prompt"][0] == {"role": "system", "content": TASK} for p in pairs)


def test_without_task_system_nothing_is_added(store, tmp_path):
    store.add_samples([Sample(instruction=f"q{i}", output="a", status="accepted") for i in range(4)])
    res = export(store, "alpaca", tmp_path / "a.json")
    assert all(set(r) == {"instruction", "input", "output"} for r in json.loads(res.files["all"].read_text()))
