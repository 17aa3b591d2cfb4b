"""The synthesis engine against a fake OpenAI-compatible endpoint that answers 429, 500, slow responses,
truncated JSON, prose around JSON, code fences, garbage and connection resets: the round finishes, the
counters add up, and what the database holds matches them."""

from __future__ import annotations

import asyncio

import fake_teacher as fake  # tests/fake_teacher.py (tests/ is on pytest's pythonpath)
import pytest

from tuitune.core.synth import rounds
from tuitune.core.synth.engine import RequestFailed, RoundFinished, RoundParams, SampleStored, SynthRound
from tuitune.core.synth.teacher import Teacher, TeacherConfig

pytestmark = pytest.mark.timeout(120)


def _serve(*args):
    proc, url = fake.spawn(*args)
    return proc, url


def _check_invariants(c, store, round_id):
    assert c.requests == c.responses + c.failed_requests + c.cancelled_requests
    assert c.returned == (c.stored + c.invalid + c.too_short + c.too_long + c.duplicates + c.surplus
                          + c.answer_failed)
    assert store.count(round_id=round_id) == c.stored
    keys = [s.prompt_key() for s in store.samples()]
    assert len(keys) == len(set(keys)), "a duplicate prompt was stored"


def test_faults_round_finishes_and_counters_add_up(seeded):
    proc, url = _serve("--mode", "faults", "--slow", "2")
    try:
        cfg = TeacherConfig("fake", url, "fake-model", timeout=0.8, max_retries=2)
        events = []
        fin = asyncio.run(SynthRound(seeded, Teacher(cfg), RoundParams(n=30, per_request=3, concurrency=4),
                                     on_event=events.append).run())
        served = fake.stats(url)
    finally:
        proc.kill()
        proc.wait()
    c = fin.counters
    assert fin.status == "finished", fin.message
    assert c.stored == 30 and seeded.count(origin="synth") == 30
    _check_invariants(c, seeded, fin.round_id)
    # every kind of fault was really served, and each left its trace in the counters
    for kind in ("429", "500", "reset", "slow", "truncated", "prose", "fenced", "garbage", "dup"):
        assert served["behaviours"].get(kind, 0) >= 1, (kind, served)
    assert c.unparseable >= 1  # the garbage replies
    assert c.truncated >= 1  # complete items of truncated replies were kept
    assert c.duplicates >= 1  # the repeated sample
    # retries happened underneath: more HTTP requests reached the server than the engine counted
    assert served["posts"] > c.requests
    assert sum(isinstance(e, SampleStored) for e in events) == 30
    assert isinstance(events[-1], RoundFinished)
    r = rounds.get_round(seeded, fin.round_id)
    assert r.status == "finished" and r.counters["stored"] == 30 and r.finished_at


def test_retries_exhausted_are_counted_not_fatal(seeded):
    """With no retries, 429/500/reset/slow replies fail their request; the round still finishes."""
    proc, url = _serve("--mode", "faults", "--slow", "2")
    try:
        cfg = TeacherConfig("fake", url, "fake-model", timeout=0.8, max_retries=0)
        events = []
        fin = asyncio.run(SynthRound(seeded, Teacher(cfg), RoundParams(n=12, per_request=2, concurrency=3),
                                     on_event=events.append).run())
    finally:
        proc.kill()
        proc.wait()
    c = fin.counters
    assert fin.status == "finished", fin.message
    assert c.failed_requests >= 3
    assert sum(isinstance(e, RequestFailed) for e in events) == c.failed_requests
    _check_invariants(c, seeded, fin.round_id)


def test_endpoint_without_json_schema_falls_back_to_text(seeded):
    proc, url = _serve("--mode", "ok", "--no-schema")
    try:
        teacher = Teacher(TeacherConfig("fake", url, "fake-model", supports_json_schema="auto", timeout=5))
        fin = asyncio.run(SynthRound(seeded, teacher, RoundParams(n=6, per_request=3, concurrency=2)).run())
    finally:
        proc.kill()
        proc.wait()
    assert fin.status == "finished" and fin.counters.stored == 6
    assert teacher.json_schema is False  # learnt after the first 400
    _check_invariants(fin.counters, seeded, fin.round_id)


def test_inputs_mode_answers_in_a_second_pass(seeded):
    proc, url = _serve("--mode", "ok")
    try:
        teacher = Teacher(TeacherConfig("fake", url, "fake-model", timeout=5))
        fin = asyncio.run(SynthRound(seeded, teacher, RoundParams(n=5, per_request=2, concurrency=2,
                                                                  mode="inputs")).run())
    finally:
        proc.kill()
        proc.wait()
    c = fin.counters
    assert fin.status == "finished" and c.stored == 5
    assert c.answer_requests >= 5
    stored = seeded.samples(origin="synth")
    assert all(s.output.startswith("Answer ") and s.instruction.startswith("Explain") for s in stored)
    assert all(s.system == "You explain words." and s.status == "pending" for s in stored)
    _check_invariants(c, seeded, fin.round_id)


def test_dead_endpoint_fails_the_round_resumably(seeded):
    cfg = TeacherConfig("dead", "http://127.0.0.1:9/v1", "x", timeout=0.5, max_retries=0)
    fin = asyncio.run(SynthRound(seeded, Teacher(cfg), RoundParams(n=4, per_request=2, concurrency=2)).run())
    assert fin.status == "failed" and "in a row failed" in fin.message
    assert fin.counters.stored == 0 and fin.counters.failed_requests >= 6
    assert rounds.unfinished_round(seeded).id == fin.round_id  # the next run resumes it


def test_cancel_keeps_what_was_stored_and_resumes(seeded):
    proc, url = _serve("--mode", "ok", "--delay", "0.3")
    try:
        cfg = TeacherConfig("fake", url, "fake-model", timeout=5)

        async def go():
            eng = SynthRound(seeded, Teacher(cfg), RoundParams(n=12, per_request=1, concurrency=2))
            seen = 0
            async for ev in eng.events():
                if isinstance(ev, SampleStored):
                    seen += 1
                    if seen == 3:
                        eng.cancel()
                if isinstance(ev, RoundFinished):
                    return ev

        first = asyncio.run(go())
        assert first.status == "cancelled"
        kept = {s.id for s in seeded.samples(origin="synth")}
        assert 3 <= len(kept) < 12
        second = asyncio.run(SynthRound(seeded, Teacher(cfg), RoundParams(n=99, per_request=2)).run())
    finally:
        proc.kill()
        proc.wait()
    assert second.round_id == first.round_id and second.status == "finished"
    assert second.counters.sessions == 2
    after = {s.id for s in seeded.samples(origin="synth")}
    assert kept <= after and len(after) == 12  # the round's 12, not 99: it resumed


def test_cancelling_the_task_from_outside_marks_the_round_cancelled(seeded):
    """What a TUI worker does: cancel the asyncio task running the round."""
    proc, url = _serve("--mode", "ok", "--delay", "0.3")
    try:
        cfg = TeacherConfig("fake", url, "fake-model", timeout=5)

        async def go():
            stored = asyncio.Event()
            eng = SynthRound(seeded, Teacher(cfg), RoundParams(n=20, per_request=1, concurrency=2),
                             on_event=lambda ev: isinstance(ev, SampleStored) and stored.set())
            task = asyncio.ensure_future(eng.run())
            await stored.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return eng.round.id

        rid = asyncio.run(go())
    finally:
        proc.kill()
        proc.wait()
    r = rounds.get_round(seeded, rid)
    assert r.status == "cancelled" and 1 <= seeded.count(round_id=rid) < 20
    assert r.counters["stored"] == seeded.count(round_id=rid)
    assert rounds.unfinished_round(seeded).id == rid
