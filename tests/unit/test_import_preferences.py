"""Preference pairs imported from LLaMA-Factory's ranking formats (the real dpo_en_demo fixture) and TRL's
preference formats come out of `tuitune export --format dpo` (and the DPO training records) as the same
chosen/rejected; broken pairs are refused naming file, record and field, and nothing is stored."""

from __future__ import annotations

import json

from click.testing import CliRunner

from tuitune.cli import main
from tuitune.core.data.formats import read_file
from tuitune.core.data.importing import import_file
from tuitune.core.data.preferences import preference_pairs
from tuitune.core.data.store import Store


def run(project, *args):
    res = CliRunner().invoke(main, ["--project", str(project), *map(str, args)])
    return res


def test_llamafactory_dpo_demo_round_trips_through_the_dpo_export(real_fixtures, project, tmp_path):
    src = real_fixtures / "llamafactory_dpo_en_demo.json"
    original = json.loads(src.read_text(encoding="utf-8"))
    res = run(project, "import", src)
    assert res.exit_code == 0, res.output
    assert f"Imported {len(original)} records" in res.stdout and "(sharegpt ranking)" in res.stdout
    assert f"{len(original)} of them are preference pairs" in res.stdout
    out = tmp_path / "pairs.json"
    res = run(project, "export", "--format", "dpo", "-o", out)
    assert res.exit_code == 0, res.output
    exported = json.loads(out.read_text(encoding="utf-8"))
    assert len(exported) == len(original)
    for src_rec, rec in zip(original, exported):
        assert rec["chosen"] == src_rec["chosen"]["value"] and rec["rejected"] == src_rec["rejected"]["value"]
        conv = src_rec["conversations"]
        system = conv[0]["value"] if conv[0]["from"] == "system" else ""
        turns = [m["value"] for m in conv if m["from"] != "system"]
        assert rec["instruction"] == turns[-1]
        assert rec["history"] == [[turns[i], turns[i + 1]] for i in range(0, len(turns) - 1, 2)]
        assert rec["system"] == system
    trl = [json.loads(line) for line in out.with_name("pairs.trl.jsonl").read_text(encoding="utf-8").splitlines()]
    assert trl[0]["chosen"] == [{"role": "assistant", "content": original[0]["chosen"]["value"]}]
    assert trl[0]["prompt"][-1] == {"role": "user", "content": original[0]["conversations"][-1]["value"]}
    # and the export imports back as the same pairs (LLaMA-Factory's Alpaca ranking format, TRL's format)
    for again in (out, out.with_name("pairs.trl.jsonl")):
        back = read_file(again).samples
        assert [(s.output, s.rejected()) for s in back] == [(r["chosen"], r["rejected"]) for r in exported]


def test_trl_preference_formats(tmp_path, store):
    rows = [
        {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},
        {"prompt": [{"role": "user", "content": "What color is the sky?"}],
         "chosen": [{"role": "assistant", "content": "It is blue."}],
         "rejected": [{"role": "assistant", "content": "It is green."}]},
        {"chosen": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Sky?"},
                    {"role": "assistant", "content": "Blue."}],
         "rejected": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Sky?"},
                      {"role": "assistant", "content": "Green."}]}]
    p = tmp_path / "pref.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    rep = import_file(store, p)
    assert rep.stored == 3 and rep.pairs == 3 and rep.parsed.format == "trl preference"
    pairs = preference_pairs(store)
    assert [(x.prompt.instruction, x.chosen, x.rejected, x.prompt.system) for x in pairs] == [
        ("The sky is", " blue.", " green.", ""), ("What color is the sky?", "It is blue.", "It is green.", ""),
        ("Sky?", "Blue.", "Green.", "Be brief.")]
    assert pairs[2].to_trl() == {"prompt": [{"role": "system", "content": "Be brief."},
                                            {"role": "user", "content": "Sky?"}],
                                 "chosen": [{"role": "assistant", "content": "Blue."}],
                                 "rejected": [{"role": "assistant", "content": "Green."}]}


def test_preference_parquet_like_the_hub_has(tmp_path, store):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": [{"role": "user", "content": f"q{i}"}], "chosen": [{"role": "assistant", "content": f"good{i}"}],
             "rejected": [{"role": "assistant", "content": f"bad{i}"}]} for i in range(3)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train.parquet")
    assert import_file(store, tmp_path / "train.parquet").pairs == 3
    assert [(x.chosen, x.rejected) for x in preference_pairs(store)] == [(f"good{i}", f"bad{i}") for i in range(3)]


def test_broken_pairs_are_refused(tmp_path, project):
    rows = [{"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", "value": "a"},
             "rejected": {"from": "gpt", "value": "b"}},
            {"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", "value": "a"}},
            {"prompt": "q", "chosen": "same", "rejected": "same"},
            {"chosen": "q a", "rejected": "q b"},
            {"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
             "rejected": [{"role": "user", "content": "other"}, {"role": "assistant", "content": "b"}]},
            {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
             "chosen": {"from": "gpt", "value": "x"}, "rejected": {"from": "gpt", "value": "y"}},
            {"instruction": "q", "chosen": "a", "rejected": {"from": "human", "value": "b"}}]
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(rows))
    res = run(project, "import", p)
    assert res.exit_code == 2, res.output
    err = res.stderr
    assert f"{p}:record [1]: rejected: missing; a preference record needs both chosen and rejected" in err
    assert f"{p}:record [2]: rejected: is the same as chosen" in err
    assert f"{p}:record [3]: prompt: missing; with chosen given as a string the prompt cannot be told" in err
    assert f"{p}:record [4]: rejected: differs from chosen before its last message" in err
    assert f"{p}:record [5]: conversations: expected a prompt ending with a user message" in err
    assert f"{p}:record [6]: rejected.from: expected an assistant message, got a user message" in err
    assert "record [0]" not in err and "6 of 7 records have problems; nothing was imported" in err
    with Store.open(project) as st:
        assert st.count() == 0


def test_pending_pairs_count_once_accepted(tmp_path, store):
    from tuitune.core.data.review import accept

    p = tmp_path / "p.jsonl"
    p.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n")
    import_file(store, p, as_="pending")
    assert preference_pairs(store) == []
    (s,) = store.samples()
    accept(store, s.id)
    assert [(x.chosen, x.rejected) for x in preference_pairs(store)] == [("a", "b")]


def test_openai_preference_format(tmp_path, project):
    good = {"input": {"messages": [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "How cold is San Francisco today?"}],
                      "tools": [], "parallel_tool_calls": True},
            "preferred_output": [{"role": "assistant", "content": "Mild: a high near 20°C."}],
            "non_preferred_output": [{"role": "assistant", "content": "It is cold."}]}
    p = tmp_path / "oa.jsonl"
    p.write_text(json.dumps(good) + "\n")
    res = run(project, "import", p)
    assert res.exit_code == 0 and "(openai preference)" in res.stdout, res.output
    with Store.open(project) as st:
        (pair,) = preference_pairs(st)
    assert (pair.prompt.system, pair.prompt.instruction, pair.chosen, pair.rejected) == (
        "Be brief.", "How cold is San Francisco today?", "Mild: a high near 20°C.", "It is cold.")
    bad = dict(good, input={"messages": good["input"]["messages"], "tools": [{"type": "function"}]})
    del bad["non_preferred_output"]
    q = tmp_path / "bad.jsonl"
    q.write_text(json.dumps(bad) + "\n")
    res = run(project, "import", q)
    assert res.exit_code == 2
    assert f"{q}:line 1: input.tools: tool definitions cannot be imported" in res.stderr
    assert f"{q}:line 1: non_preferred_output: missing" in res.stderr
