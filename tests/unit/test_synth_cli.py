"""`tuitune synth` options against the fake endpoint: rounds split by --round-size, --fresh, --rounds,
--propose-topics, --list-teachers, and errors that say what to do."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tuitune.cli import main
from tuitune.core.data.samples import Sample
from tuitune.core.data.store import Store
from tuitune.core.synth import rounds

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def proj(project, monkeypatch, tmp_path):
    monkeypatch.setenv("TUITUNE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TUITUNE_TEACHER_BASE_URL", raising=False)
    with Store.open(project) as st:
        st.set_task(description="Explain made-up words.")
        st.add_samples([Sample(f"Explain the word quib{i}", f"Quib{i} is a thing.", origin="seed") for i in range(3)])
    return project


def synth(proj, *args):
    return CliRunner().invoke(main, ["--project", str(proj), "synth", *args])


def test_round_size_splits_into_rounds_and_rounds_lists_them(proj, fake_endpoint):
    r = synth(proj, "--n", "7", "--round-size", "3", "--base-url", fake_endpoint, "--model", "m", "--json")
    assert r.exit_code == 0, r.output
    finals = [json.loads(line) for line in r.output.splitlines() if line.startswith("{")]
    assert [f["stored"] for f in finals] == [3, 3, 1]
    with Store.open(proj) as st:
        assert [x.requested for x in rounds.list_rounds(st)] == [3, 3, 1]
        assert st.count(origin="synth") == 7
    r = synth(proj, "--rounds")
    assert r.exit_code == 0 and r.output.count("finished") == 3


def test_fresh_abandons_the_unfinished_round(proj, fake_endpoint):
    with Store.open(proj) as st:
        old = rounds.start_round(st, 50, {})
    r = synth(proj, "--n", "2", "--base-url", fake_endpoint, "--model", "m", "--fresh")
    assert r.exit_code == 0, r.output
    assert f"Abandoned unfinished round {old.id}" in r.output
    with Store.open(proj) as st:
        assert rounds.get_round(st, old.id).status == "abandoned"
        assert rounds.list_rounds(st)[-1].requested == 2


def test_propose_topics_prints_them(proj, fake_endpoint, tmp_path):
    r = synth(proj, "--propose-topics", "3", "--base-url", fake_endpoint, "--model", "m")
    assert r.exit_code == 0, r.output
    topics = r.output.strip().splitlines()[-3:]
    assert len(topics) == 3 and all(t.startswith("topic ") for t in topics)
    f = tmp_path / "topics.txt"
    f.write_text("\n".join(topics))
    r = synth(proj, "--n", "3", "--per-request", "1", "--topics-file", str(f), "--base-url", fake_endpoint, "--model", "m")
    assert r.exit_code == 0, r.output
    with Store.open(proj) as st:
        prompt = rounds.list_rounds(st)[-1].prompt
    assert topics[0] in prompt and "# Topic for this batch" in prompt


def test_teachers_and_errors(proj, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "teachers.yaml").write_text(
        "teachers:\n  ds:\n    base_url: http://127.0.0.1:9/v1\n    model: deepseek-chat\n"
        "    api_key_env: DS_KEY_FOR_TEST\n    supports_json_schema: false\n")
    r = synth(proj, "--list-teachers")
    assert r.exit_code == 0 and "embedded" in r.output and "ds" in r.output and "$DS_KEY_FOR_TEST" in r.output
    monkeypatch.delenv("DS_KEY_FOR_TEST", raising=False)
    r = synth(proj, "--n", "2", "--teacher", "ds")
    assert r.exit_code == 1 and "export DS_KEY_FOR_TEST" in r.output
    r = synth(proj, "--n", "2", "--teacher", "nope")
    assert r.exit_code == 1 and "no teacher named 'nope'" in r.output
    r = synth(proj, "--n", "0", "--teacher", "ds")
    assert r.exit_code == 2
    r = CliRunner().invoke(main, ["--project", str(tmp_path / "empty"), "synth", "--n", "2"])
    assert r.exit_code == 2 and "tuitune init" in r.output


def test_unreachable_teacher_exits_nonzero_and_resumes_later(proj, fake_endpoint):
    r = synth(proj, "--n", "3", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--timeout", "0.5",
              "--retries", "0")
    assert r.exit_code == 3 and "in a row failed" in r.output
    r = synth(proj, "--n", "99", "--base-url", fake_endpoint, "--model", "m")
    assert r.exit_code == 0 and "Resuming round 1" in r.output
    with Store.open(proj) as st:
        assert st.count(origin="synth") == 3 and len(rounds.list_rounds(st)) == 1


@pytest.mark.parametrize(("content", "says"), [
    ("teachers: [oops", "is not valid YAML"),
    (b"teachers:\n  ds:\n    model: \xff\xfe\n", "not UTF-8 text"),
    ("- just\n- a list\n", "must map teacher names"),
    ("teachers:\n  ds:\n    base_url: http://h/v1\n", "'ds' needs at least base_url and model"),
    ("teachers:\n  ds:\n    base_url: http://h/v1\n    model: m\n    timeout: soon\n", "'ds': timeout: expected seconds"),
    ("teachers:\n  ds:\n    base_url: http://h/v1\n    model: m\n    max_retries: -1\n", "max_retries: expected a whole"),
    ("teachers:\n  ds:\n    base_url: http://h/v1\n    model: [m]\n", "'ds': model: expected text"),
    ("teachers:\n  ds:\n    base_url: http://h/v1\n    model: m\n    supports_json_schema: maybe\n",
     "supports_json_schema: expected true, false or auto"),
    (None, "cannot read"),  # a folder where the file should be
])
def test_a_broken_teachers_file_is_bad_input_named_with_its_field(proj, tmp_path, content, says):
    home = tmp_path / "home"
    home.mkdir()
    path = home / "teachers.yaml"
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    for args in (["--list-teachers"], ["--n", "2", "--teacher", "ds"]):
        r = synth(proj, *args)
        assert r.exit_code == 2, (args, r.output)
        assert "Traceback" not in r.output and str(path) in r.output and says in r.output, (args, r.output)
    with Store.open(proj) as st:
        assert rounds.list_rounds(st) == [], "a round was started with a broken teachers.yaml"
