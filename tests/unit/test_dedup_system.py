"""Duplicates are judged on everything that is trained on: records that differ only in their system prompt,
their history or a pair's rejected answer are not duplicates (import report, stats, dedup); a project
written before schema 3 is re-keyed when opened."""

from __future__ import annotations

import hashlib
import json

from click.testing import CliRunner

from tuitune.cli import main
from tuitune.core.data.formats import read_file
from tuitune.core.data.groups import duplicate_groups
from tuitune.core.data.samples import Sample, normalise
from tuitune.core.data.store import MIGRATIONS, Store


def run(project, *args):
    res = CliRunner().invoke(main, ["--project", str(project), *map(str, args)])
    assert res.exit_code == 0, res.output
    return res.stdout


def write(tmp_path, name, rows):
    p = tmp_path / name
    p.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return p


BASE = [{"instruction": f"Translate: word {i}", "output": f"词 {i}"} for i in range(30)]


def test_system_prompt_makes_a_different_record(tmp_path, project):
    run(project, "import", write(tmp_path, "a.json", BASE))
    own = [dict(r, system=f"You are translator #{i}.") for i, r in enumerate(BASE)]
    out = run(project, "import", write(tmp_path, "b.json", own))
    assert "already in the project" not in out  # before the fix: "30 were already in the project"
    st = json.loads(run(project, "stats", "--json"))
    assert st["total"] == 60 and st["duplicates"] == 0
    assert "Removed 0 duplicates" in run(project, "dedup")
    # the same records with the same system prompts ARE duplicates (case and spacing aside)
    again = [dict(r, system=r["system"].upper() + "  ") for r in own[:5]]
    out = run(project, "import", write(tmp_path, "c.json", again))
    assert "5 were already in the project" in out
    assert json.loads(run(project, "stats", "--json"))["duplicates"] == 5
    assert "Removed 5 duplicates" in run(project, "dedup")
    with Store.open(project) as s:
        assert s.count() == 60


def test_within_a_file_history_and_system_count(tmp_path):
    rows = [{"instruction": "q", "output": "a"}, {"instruction": "q", "output": "a", "system": "S"},
            {"instruction": "q", "output": "a", "history": [["hi", "hello"]]}, {"instruction": "Q ", "output": "a"}]
    parsed = read_file(write(tmp_path, "d.json", rows))
    assert parsed.duplicates == 1  # only the last one repeats the first


def test_pairs_differing_in_the_rejected_answer_are_kept(tmp_path, project):
    rows = [{"prompt": "q", "chosen": "good", "rejected": "bad one"},
            {"prompt": "q", "chosen": "good", "rejected": "bad two"},
            {"prompt": "q", "chosen": "good", "rejected": "bad one"}]
    p = tmp_path / "p.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows))
    out = run(project, "import", p)
    assert "Duplicates kept: 1 repeat earlier records" in out
    assert "Removed 1 duplicate" in run(project, "dedup")
    with Store.open(project) as s:
        assert sorted(x.rejected() for x in s.samples()) == ["bad one", "bad two"]


def _old_key(s: Sample) -> str:
    """Sample.key() before schema 3: the system prompt was not part of it."""
    parts = [normalise(s.instruction), normalise(s.input), normalise(s.output)]
    parts += [normalise(q) + "\x1f" + normalise(a) for q, a in s.history]
    return hashlib.sha1("\x1e".join(parts).encode()).hexdigest()


def test_a_schema_2_project_is_rekeyed(project):
    with Store.open(project) as s:
        s.add_samples([Sample(instruction="q", output="a", system="one"), Sample(instruction="q", output="a",
                                                                                 system="two")])
        for smp in s.samples():  # as a schema-2 tuitune wrote them
            s.conn.execute("UPDATE samples SET key = ? WHERE id = ?", (_old_key(smp), smp.id))
        for stmt in ("DROP TABLE judgments", "ALTER TABLE samples DROP COLUMN teacher",  # what schema 4 added
                     "ALTER TABLE samples DROP COLUMN decided_by", "ALTER TABLE reviews DROP COLUMN bulk",
                     "ALTER TABLE rounds DROP COLUMN batch"):
            s.conn.execute(stmt)
        s.conn.execute("PRAGMA user_version = 2")
        assert s.conn.execute("SELECT COUNT(*) FROM samples GROUP BY key").fetchall() == [(2,)]
    with Store.open(project) as s:
        assert s.schema_version == len(MIGRATIONS)
        assert s.stats()["duplicates"] == 0 and s.remove_duplicates() == 0
        assert {r[0] for r in s.conn.execute("SELECT key FROM samples")} == {x.key() for x in s.samples()}


def test_key_without_system_is_unchanged():
    s = Sample(instruction="q", input="i", output="a", history=[("h", "k")])
    assert s.key() == _old_key(s)  # old projects' plain records keep their key


def test_split_groups_still_join_same_prompts_across_system_prompts():
    # A held-out split must not see a training prompt again, whatever its system prompt: unchanged.
    samples = [Sample(instruction="q", output="a", system="one"), Sample(instruction="q", output="b", system="two"),
               Sample(instruction="something else entirely", output="c")]
    assert duplicate_groups(samples) == [0, 0, 1]
