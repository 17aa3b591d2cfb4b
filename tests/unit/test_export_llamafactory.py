"""LLaMA-Factory's contract on tuitune's exports of real data: plain (no system/history), with system/history,
and mixed; every format, with and without a split.

The contract (LLaMA-Factory 0.9.5, data/parser.py + data/converter.py + data/README.md): an entry's file_name ends
in a suffix its loader knows; `formatting` is alpaca or sharegpt; every column the entry declares is read as
`example[column]` (KeyError when a record lacks it); alpaca `history` is a list of [query, answer] pairs;
sharegpt messages alternate user (odd) / assistant (even) turns by `tags`, after an optional leading system turn,
with an even count for SFT; `ranking: true` entries declare chosen/rejected columns.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuitune.core.data.export import export
from tuitune.core.data.formats import read_file
from tuitune.core.data.preferences import preference_pairs
from tuitune.core.data.samples import Sample

# LLaMA-Factory's DatasetAttr defaults (columns and sharegpt tags)
LF_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "messages": "conversations"}
LF_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
           "system_tag": "system"}


def load_rows(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def check_llamafactory_contract(folder: Path) -> dict[str, list[dict]]:
    """Assert the contract for every entry of folder/dataset_info.json; returns entry name -> records."""
    info = json.loads((folder / "dataset_info.json").read_text(encoding="utf-8"))
    out = {}
    for name, entry in info.items():
        assert entry["file_name"].endswith((".json", ".jsonl")), (name, entry["file_name"])
        rows = load_rows(folder / entry["file_name"])
        assert rows, name
        formatting = entry.get("formatting", "alpaca")
        assert formatting in ("alpaca", "sharegpt"), name
        cols = entry.get("columns", {})
        declared = {k: cols.get(k, LF_COLUMNS.get(k)) for k in
                    ("prompt", "query", "response", "history", "messages", "system", "chosen", "rejected")}
        if formatting == "alpaca":
            needed = ["prompt", "query", "history", "system"] + (["chosen", "rejected"] if entry.get("ranking")
                                                                 else ["response"])
        else:
            needed = ["messages", "system"]
        if entry.get("ranking"):
            assert cols.get("chosen") and cols.get("rejected"), name
        for i, r in enumerate(rows):
            for k in needed:
                if declared[k]:
                    assert declared[k] in r, f"{name}: record {i} lacks the declared column {declared[k]!r}"
            if formatting == "alpaca" and declared["history"]:
                assert all(isinstance(p, list) and len(p) == 2 for p in r[declared["history"]]), (name, i)
            if formatting == "sharegpt":
                check_turns(entry, r[declared["messages"]], name, i)
        out[name] = rows
    return out


def check_turns(entry: dict, messages: list[dict], name: str, i: int) -> None:
    tags = {**LF_TAGS, **entry.get("tags", {})}
    role, user, assistant, system = tags["role_tag"], tags["user_tag"], tags["assistant_tag"], tags["system_tag"]
    if system and messages and messages[0][role] == system:
        messages = messages[1:]
    assert len(messages) % 2 == 0, f"{name}: record {i} has an odd number of turns"
    for t, m in enumerate(messages):
        assert m[role] == (user if t % 2 == 0 else assistant), f"{name}: record {i} turn {t} is {m[role]!r}"
        assert isinstance(m[tags["content_tag"]], str)


# ---- real data in three shapes ------------------------------------------------------------------------

def plain(real) -> list[Sample]:
    return read_file(real / "llamafactory_alpaca_en_demo.json").samples


def dpo_prompts(real) -> list[tuple[Sample, str, str]]:
    """(prompt sample, chosen, rejected) from LLaMA-Factory's DPO demo: 114 plain, 80 with a system prompt,
    106 with history."""
    out = []
    for r in json.loads((real / "llamafactory_dpo_en_demo.json").read_text(encoding="utf-8")):
        conv = r["conversations"]
        system = conv[0]["value"] if conv[0]["from"] == "system" else ""
        turns = [m["value"] for m in conv if m["from"] != "system"]
        history = [(turns[j], turns[j + 1]) for j in range(0, len(turns) - 1, 2)]
        out.append((Sample(instruction=turns[-1], output="", system=system, history=history),
                    r["chosen"]["value"], r["rejected"]["value"]))
    return out


def with_system_history(real) -> list[Sample]:
    return [s.with_(output=c) for s, c, _ in dpo_prompts(real) if s.system or s.history]


def mixed(real) -> list[Sample]:
    return plain(real)[:200] + [s.with_(output=c) for s, c, _ in dpo_prompts(real)]


SHAPES = {"plain": plain, "system_history": with_system_history, "mixed": mixed}


def fill_pairs(store, prompts) -> None:
    samples = []
    for s, chosen, rejected in prompts:
        samples += [s.with_(output=chosen, status="accepted", origin="import"),
                    s.with_(output=rejected, status="rejected", origin="synth")]
    store.add_samples(samples)


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("fmt", ["alpaca", "sharegpt", "openai"])
@pytest.mark.parametrize("test_size", [0, 0.2])
def test_sft_exports_meet_llamafactory_contract(store, tmp_path, real_fixtures, shape, fmt, test_size):
    samples = SHAPES[shape](real_fixtures)
    store.add_samples([s.with_(status="accepted") for s in samples])
    out = tmp_path / "out"
    out.mkdir()
    res = export(store, fmt, out if test_size else out / "data", test_size=test_size)
    entries = check_llamafactory_contract(out)
    assert sum(len(rows) for rows in entries.values()) == len(samples)
    assert set(entries) == ({"tuitune" if fmt == "alpaca" else f"tuitune_{fmt}"} if not test_size else
                            {f"{res.entries[0]}", f"{res.entries[1]}"})
    info = json.loads((out / "dataset_info.json").read_text())
    for name, rows in entries.items():
        cols = info[name]["columns"]
        has_system = any(r.get("system") for r in rows)
        if fmt == "openai":  # the system prompt travels as a leading system message (system_tag)
            assert info[name]["tags"]["system_tag"] == "system" and set(cols) == {"messages"}
            assert any(r["messages"][0]["role"] == "system" for r in rows) == has_system or not has_system
        else:
            # the column is declared exactly when the file has system prompts; plain files declare nothing extra
            assert ("system" in cols) == any("system" in r for r in rows)
            assert ("system" in cols) == (shape != "plain")
            assert all(set(r) == set(rows[0]) for r in rows), "one key set per file"
        if fmt == "alpaca":
            assert ("history" in cols) == (shape != "plain")
        if shape == "plain" and fmt != "openai":
            assert cols == ({"prompt": "instruction", "query": "input", "response": "output"} if fmt == "alpaca"
                            else {"messages": "conversations"})


@pytest.mark.parametrize("shape", ["plain", "system", "mixed"])
@pytest.mark.parametrize("test_size", [0, 0.25])
def test_dpo_exports_meet_llamafactory_contract(store, tmp_path, real_fixtures, shape, test_size):
    prompts = dpo_prompts(real_fixtures)
    prompts = {"plain": [p for p in prompts if not (p[0].system or p[0].history)],
               "system": [p for p in prompts if p[0].system], "mixed": prompts}[shape]
    fill_pairs(store, prompts)
    out = tmp_path / "out"
    out.mkdir()
    res = export(store, "dpo", out if test_size else out / "pairs.json", test_size=test_size)
    entries = check_llamafactory_contract(out)
    info = json.loads((out / "dataset_info.json").read_text())
    assert all(info[n]["ranking"] is True for n in entries)
    n_pairs = len(preference_pairs(store))  # a prompt repeated in the demo pairs each kept with each rejected
    assert n_pairs >= len(prompts) and sum(len(rows) for rows in entries.values()) == n_pairs
    for name in entries:
        assert ("system" in info[name]["columns"]) == (shape != "plain")
        assert ("history" in info[name]["columns"]) == (shape == "mixed")
    # TRL's pairs beside: the same count, conversational prompt/chosen/rejected
    trl = [p for part, p in res.files.items() if part.startswith("trl")]
    assert len(trl) == (2 if test_size else 1)
    trl_rows = [r for p in trl for r in load_rows(p)]
    assert len(trl_rows) == n_pairs
    assert all(set(r) == {"prompt", "chosen", "rejected"} and r["prompt"][-1]["role"] == "user" for r in trl_rows)


def test_two_formats_in_one_folder_keep_both_entries(store, tmp_path, real_fixtures):
    store.add_samples([s.with_(status="accepted") for s in plain(real_fixtures)[:50]])
    for fmt in ("alpaca", "sharegpt", "openai"):
        export(store, fmt, tmp_path)
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert {n: e["file_name"] for n, e in info.items()} == {
        "tuitune": "tuitune.json", "tuitune_sharegpt": "tuitune_sharegpt.json", "tuitune_openai": "tuitune_openai.jsonl"}
    check_llamafactory_contract(tmp_path)
