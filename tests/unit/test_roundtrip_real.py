"""Import then export gives back the same records, on real third-party files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

TUITUNE = [sys.executable, "-m", "tuitune.cli"]


def run(project, *args, check=True):
    res = subprocess.run([*TUITUNE, "--project", str(project), *args], capture_output=True, text=True, check=False)
    if check and res.returncode != 0:
        raise AssertionError(f"tuitune {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


def load_json(path):
    return json.loads(path.read_text(encoding="utf-8"))


def canon(rec: dict) -> dict:
    """Field order aside; absent optional fields and their empty values are the same thing."""
    out = {k: v for k, v in rec.items() if not (k in ("system", "history") and not v)}
    out.setdefault("input", "")
    return out


@pytest.mark.parametrize("name", ["llamafactory_alpaca_en_demo.json", "llamafactory_alpaca_zh_demo.json",
                                  "llamafactory_identity.json"])
def test_alpaca_roundtrip(real_fixtures, project, tmp_path, name):
    src = real_fixtures / name
    res = run(project, "import", str(src))
    original = load_json(src)
    assert f"Imported {len(original)} records" in res.stdout
    out = tmp_path / "out.json"
    run(project, "export", "--format", "alpaca", "--output", str(out))
    exported = load_json(out)
    assert [canon(r) for r in exported] == [canon(r) for r in original]
    # exactly the LLaMA-Factory alpaca keys, nothing else
    assert all(set(r) <= {"instruction", "input", "output", "system", "history"} for r in exported)
    info = load_json(tmp_path / "dataset_info.json")
    assert info["tuitune"]["file_name"] == "out.json"
    assert info["tuitune"]["columns"]["response"] == "output"


def test_stanford_seed_tasks_instances_map_to_input_output(real_fixtures, project, tmp_path):
    src = real_fixtures / "stanford_alpaca_seed_tasks.jsonl"
    tasks = [json.loads(line) for line in src.read_text(encoding="utf-8").splitlines() if line.strip()]
    expected = [{"instruction": t["instruction"], "input": inst["input"], "output": inst["output"]}
                for t in tasks for inst in t["instances"]]
    run(project, "import", str(src), "--as", "seeds")
    out = tmp_path / "seeds.jsonl"
    run(project, "export", "--format", "openai", "--output", str(out))
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len(expected) == 175
    for row, exp in zip(rows, expected):
        user = exp["instruction"] + ("\n" + exp["input"] if exp["input"] else "")
        assert row["messages"] == [{"role": "user", "content": user}, {"role": "assistant", "content": exp["output"]}]
    alpaca = tmp_path / "seeds.json"
    run(project, "export", "--format", "alpaca", "--output", str(alpaca))
    assert [canon(r) for r in load_json(alpaca)] == [canon(r) for r in expected]


def test_sharegpt_and_openai_roundtrip_keep_system_and_history(project, tmp_path):
    records = [
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"},
                           {"from": "human", "value": "翻译: pod"}, {"from": "gpt", "value": "Pod（容器组）"}],
         "system": "You translate Kubernetes docs."},
        {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
    ]
    src = tmp_path / "chat.json"
    src.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    run(project, "import", str(src))
    out = tmp_path / "sg.json"
    run(project, "export", "--format", "sharegpt", "--output", str(out))
    # a mixed file: every record has the system key (empty where it had none), so LLaMA-Factory's column exists
    assert load_json(out) == [{"system": "", **r} for r in records]
    assert all(set(r) == {"conversations", "system"} for r in load_json(out))
    assert load_json(tmp_path / "dataset_info.json")["tuitune_sharegpt"]["columns"]["system"] == "system"
    run(project, "export", "--format", "alpaca", "--output", str(tmp_path / "a.json"))
    first = load_json(tmp_path / "a.json")[0]
    assert first == {"instruction": "翻译: pod", "input": "", "output": "Pod（容器组）",
                     "system": "You translate Kubernetes docs.", "history": [["hi", "hello"]]}
    # and the OpenAI form of the same data imports back to the same alpaca records
    oa = tmp_path / "oa.jsonl"
    run(project, "export", "--format", "openai", "--output", str(oa))
    p2 = tmp_path / "p2"
    run(p2, "import", str(oa))
    run(p2, "export", "--format", "sharegpt", "--output", str(tmp_path / "sg2.json"), "--name", "again")
    assert load_json(tmp_path / "sg2.json") == load_json(out)


def test_duplicates_are_kept_and_reported_then_removed_explicitly(real_fixtures, project):
    src = real_fixtures / "llamafactory_identity.json"
    run(project, "import", str(src))
    res = run(project, "import", str(src))
    n = len(load_json(src))
    assert f"{n} were already in the project" in res.stdout
    stats = json.loads(run(project, "stats", "--json").stdout)
    assert stats["total"] == 2 * n and stats["duplicates"] == n
    assert run(project, "dedup").stdout.strip() == f"Removed {n} duplicates."
    assert json.loads(run(project, "stats", "--json").stdout)["total"] == n
