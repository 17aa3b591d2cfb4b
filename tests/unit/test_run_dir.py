"""The run folder and its one events reader: incremental, tolerant of any garbage, never loses an event."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tuitune.core.training import jobs
from tuitune.core.training.config import TrainConfig
from tuitune.core.training.events import EventWriter, read_events
from tuitune.core.training.run_dir import EventFollower, RunDir, RunNotFound, read_all


def test_every_path_of_a_run_comes_from_run_dir(tmp_path):
    run = RunDir.of(tmp_path, "r1")
    assert run.path == tmp_path / "runs" / "r1" and run.id == "r1"
    assert {p.name for p in (run.config, run.data, run.events, run.merged, run.adapter, run.checkpoints)} == \
        {"config.yaml", "data.jsonl", "events.jsonl", "merged", "adapter", "checkpoints"}
    with pytest.raises(RunNotFound, match="Known runs: none"):
        RunDir.find(tmp_path, "r1")
    with pytest.raises(RunNotFound):
        RunDir.of(tmp_path, "../etc")


def test_follower_is_incremental_and_waits_for_a_partial_line(tmp_path):
    w = EventWriter(tmp_path)
    w.emit("started", pid=1)
    w.emit("step", step=1, loss=2.0, max_steps=4)
    f = EventFollower(tmp_path / "events.jsonl")
    assert [e["event"] for e in f.poll()] == ["started", "step"]
    with open(tmp_path / "events.jsonl", "a") as fh:
        fh.write(json.dumps({"event": "step", "step": 2, "loss": 1.5})[:10])  # a line still being written
    assert f.poll() == []
    with open(tmp_path / "events.jsonl", "a") as fh:
        fh.write(json.dumps({"event": "step", "step": 2, "loss": 1.5})[10:] + "\n")
    assert [e["step"] for e in f.poll()] == [2]
    assert f.state.losses == [(1, 2.0), (2, 1.5)] and f.state.max_steps == 4
    assert read_events(tmp_path / "missing") == ([], 0)


GARBAGE = [b"null", b"[1, 2, 3]", b'"text"', b'{"no_event": 1}', b'{"event": "step"}', b'{"event": "step", "step": "x"}',
           b"\xff\xfe not utf-8", b"{broken json"]


def test_garbage_lines_are_skipped_and_counted_never_raised(tmp_path):
    path = tmp_path / "events.jsonl"
    good = [json.dumps({"event": "started"}).encode(),  # no time: still fine
            json.dumps({"event": "step", "step": 1, "loss": "abc"}).encode(),  # loss not a number: no loss
            json.dumps({"event": "done", "step": 1, "time": 5}).encode()]
    path.write_bytes(b"\n".join([good[0], *GARBAGE, good[1], good[2]]) + b"\n")
    st = read_all(path)
    assert st.status == "done" and st.step == 1 and st.loss is None and st.losses == []
    assert st.bad_lines == len(GARBAGE) and st.events == 3


def test_a_torn_line_loses_nothing_written_after_it(tmp_path):
    EventWriter(tmp_path).emit("started")
    with open(tmp_path / "events.jsonl", "a") as fh:
        fh.write('{"event": "step", "st')  # the worker was killed mid-write
    EventWriter(tmp_path).emit("resumed")
    EventWriter(tmp_path).emit("done", step=3)
    st = read_all(tmp_path / "events.jsonl")
    assert st.status == "done" and st.step == 3 and st.bad_lines == 1
    # a file torn by an older writer (the next event glued to the torn line) still yields that event
    (tmp_path / "old.jsonl").write_text('{"event": "started"}\n{"event": "st{"event": "done", "step": 2}\n')
    assert read_all(tmp_path / "old.jsonl").status == "done"


def test_status_follows_the_last_start(tmp_path):
    w = EventWriter(tmp_path)
    for kind in ("started", "stopped", "resumed"):
        w.emit(kind)
    assert read_all(tmp_path / "events.jsonl").status == "running"
    w.emit("failed", error="x", hint="do y")
    st = read_all(tmp_path / "events.jsonl")
    assert st.status == "failed" and st.terminal["hint"] == "do y"


def _make_run(project, lines: bytes) -> RunDir:
    run = RunDir.of(project, "20260101-000000-lora-abcd")
    run.path.mkdir(parents=True)
    run.config.write_text(TrainConfig(max_steps=4).to_yaml())
    run.events.write_bytes(lines)
    return run


@pytest.mark.parametrize("garbage", GARBAGE + [b'{"event": "step", "step": 1, "loss": "abc"}'])
def test_runs_list_json_and_watch_survive_a_garbage_line(tmp_path, garbage):
    from tuitune.cli import main

    run = _make_run(tmp_path, garbage + b"\n" + json.dumps({"event": "done", "step": 4, "time": 1}).encode() + b"\n")
    info = jobs.run_info(run.path)
    assert info.status == "done" and info.step == 4
    r = CliRunner().invoke(main, ["--project", str(tmp_path), "runs", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)[0]["status"] == "done"
    r = CliRunner().invoke(main, ["--project", str(tmp_path), "runs"])
    assert r.exit_code == 0 and "done" in r.output, r.output
    r = CliRunner().invoke(main, ["--project", str(tmp_path), "runs", "watch", run.id, "--no-plot"])
    assert r.exit_code == 0, r.output


def test_runs_carry_the_verdict_event(tmp_path):
    from tuitune.cli import main

    run = _make_run(tmp_path, b"")
    w = EventWriter(run.path)
    w.emit("started")
    w.emit("done", step=4)
    w.emit("verdict", verdict="beats_both", summary="tuned beats base and few-shot")
    r = CliRunner().invoke(main, ["--project", str(tmp_path), "runs", "--json"])
    assert json.loads(r.output)[0]["verdict"]["summary"] == "tuned beats base and few-shot"
    assert "tuned beats base and few-shot" in CliRunner().invoke(main, ["--project", str(tmp_path), "runs"]).output


def test_phase_says_what_a_trained_run_does_until_it_ends(tmp_path):
    w = EventWriter(tmp_path)
    w.emit("started")
    w.emit("step", step=4, max_steps=4, loss=0.5)
    f = EventFollower(tmp_path / "events.jsonl")
    f.poll()
    assert f.state.phase == ""
    w.emit("phase", phase="merging", message="merging the adapter into merged/")
    f.poll()
    assert f.state.phase == "merging the adapter into merged/" and f.state.status == "running"
    w.emit("phase", phase="evaluating", message="held-out verdict: generating with base: 8/27 answers")
    f.poll()
    assert f.state.phase.endswith("8/27 answers")
    w.emit("resumed")  # a new start forgets the old phase
    f.poll()
    assert f.state.phase == ""
