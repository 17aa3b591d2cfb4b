"""Export: default content, seeded split, dataset_info.json, atomic writes."""

from __future__ import annotations

import json

import pytest

from tuitune.core.data import review
from tuitune.core.data.export import ExportError, export, held_out_count
from tuitune.core.data.samples import Sample


def fill(store, n_kept=10):
    store.add_samples([Sample(instruction=f"seed {i}", output="o", origin="seed", status="accepted") for i in range(3)])
    store.add_samples([Sample(instruction=f"kept {i}", output="o", origin="synth", status="accepted")
                       for i in range(n_kept)])
    store.add_samples([Sample(instruction="todo", output="o", origin="synth", status="pending"),
                       Sample(instruction="bad", output="o", origin="synth", status="rejected", reason="wrong")])


def test_default_is_seeds_plus_accepted(store, tmp_path):
    fill(store)
    res = export(store, "alpaca", tmp_path / "d.json")
    names = [r["instruction"] for r in json.loads((tmp_path / "d.json").read_text())]
    assert res.counts["all"] == 13 and "todo" not in names and "bad" not in names
    export(store, "alpaca", tmp_path / "n.json", include_seeds=False, name="no_seeds")
    assert len(json.loads((tmp_path / "n.json").read_text())) == 10


def test_split_is_seeded_and_complete(store, tmp_path):
    fill(store, n_kept=37)
    a = export(store, "openai", tmp_path / "a", test_size=0.2, seed=7)
    b = export(store, "openai", tmp_path / "b", test_size=0.2, seed=7)
    c = export(store, "openai", tmp_path / "c", test_size=0.2, seed=8)
    read = lambda p: p.read_text(encoding="utf-8").splitlines()
    assert read(a.files["test"]) == read(b.files["test"]) != read(c.files["test"])
    assert a.counts == {"train": 32, "test": 8}
    assert sorted(read(a.files["train"]) + read(a.files["test"])) == sorted(
        json.dumps(s.to_openai(), ensure_ascii=False) for s in store.training_samples())
    info = json.loads((tmp_path / "a" / "dataset_info.json").read_text())
    assert info["tuitune_openai_train"]["file_name"] == "train.jsonl"
    assert info["tuitune_openai_test"]["tags"]["role_tag"] == "role"
    assert not list((tmp_path / "a").glob(".*tmp"))


def test_dataset_info_entry_is_merged_not_clobbered(store, tmp_path):
    fill(store)
    (tmp_path / "dataset_info.json").write_text(json.dumps({"alpaca_en_demo": {"file_name": "alpaca_en_demo.json"}}))
    export(store, "sharegpt", tmp_path / "mine.json", name="k8s_zh")
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert set(info) == {"alpaca_en_demo", "k8s_zh"}
    # no record has a system prompt: the column is not declared (LLaMA-Factory would raise KeyError)
    assert info["k8s_zh"] == {"file_name": "mine.json", "formatting": "sharegpt",
                              "columns": {"messages": "conversations"}}


def test_nothing_to_export_is_an_error(store, tmp_path):
    with pytest.raises(ExportError, match="nothing to export"):
        export(store, "alpaca", tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


def test_split_rejects_too_large_test():
    with pytest.raises(ExportError, match="test size 5 must be a count from 0 to 1"):
        held_out_count(5, 2)
    assert held_out_count(20.0, 30) == 20 and held_out_count(0.1, 30) == 3


def test_dpo_export_from_edits_and_rejections(store, tmp_path):
    a = store.add_sample(Sample(instruction="Translate: node", output="节点", origin="synth"))
    b = store.add_sample(Sample(instruction="Translate: node", output="node", origin="synth"))
    c = store.add_sample(Sample(instruction="Translate: pod", output="荚", origin="synth"))
    review.accept(store, a.id)
    review.reject(store, b.id, "not translated")
    review.edit(store, c.id, output="Pod")
    res = export(store, "dpo", tmp_path / "pairs.json")
    rows = json.loads(res.files["all"].read_text())
    assert {(r["instruction"], r["chosen"], r["rejected"]) for r in rows} == {
        ("Translate: node", "节点", "node"), ("Translate: pod", "Pod", "荚")}
    trl = [json.loads(line) for line in (tmp_path / "pairs.trl.jsonl").read_text().splitlines()]
    assert trl[0]["prompt"][-1]["role"] == "user" and trl[0]["chosen"][0]["role"] == "assistant"
    assert json.loads((tmp_path / "dataset_info.json").read_text())["tuitune_dpo"]["ranking"] is True
