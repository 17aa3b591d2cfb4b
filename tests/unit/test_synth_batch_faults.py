"""Batch rounds through a hosted Batch API, against a fake of its files/batches routes (tests/fake_batch_api.py: no
hosted API is reachable here, and a real one cannot expire a batch or fail lines on demand): the job is kept with
the round and picked up by a later process; expired, failed and missing lines leave the round incomplete with exact
counters, and the next run asks only for what is missing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import fake_batch_api
import pytest

from tuitune.core.synth import batch as bt
from tuitune.core.synth import rounds
from tuitune.core.synth.engine import RoundParams, SynthRound
from tuitune.core.synth.teacher import Teacher, TeacherConfig
from tuitune.core.synth.types import SynthError

pytestmark = pytest.mark.timeout(60)


def _round(store, url, project, n=12, wait=True):
    async def go():
        teacher = Teacher(TeacherConfig("hosted", url, "fake-model", supports_json_schema=True, max_retries=0))
        try:
            eng = SynthRound(store, teacher, RoundParams(n=n, per_request=3))
            return await bt.run_batch_round(eng, bt.HostedRunner(teacher, poll_s=0.01), project=project, wait=wait)
        finally:
            await teacher.close()
    return asyncio.run(go())


def _invariants(c, store, rid):
    assert c.requests == c.responses + c.failed_requests + c.cancelled_requests
    assert c.returned == c.stored + c.invalid + c.too_short + c.too_long + c.duplicates + c.surplus + c.answer_failed
    assert store.count(round_id=rid) == c.stored


def test_hosted_batch_round_completes_with_the_online_counters(seeded, tmp_path):
    with fake_batch_api.serve("ok") as (url, state):
        fin = _round(seeded, url, tmp_path)
    assert fin.status == "finished", fin.message
    c = fin.counters
    _invariants(c, seeded, fin.round_id)
    assert c.stored == 12 and c.requests == 5  # ceil(12 * 1.25 / 3) requests, the surplus dropped
    assert c.surplus == 5 * 3 - 12
    assert state.created == 1
    job = bt.load_job(seeded, fin.round_id)
    assert job.kind == "hosted" and job.id.startswith("batch_") and job.status == "collected"
    lines = [json.loads(x) for x in Path(job.input).read_text().splitlines()]
    assert len({x["custom_id"] for x in lines}) == 5
    assert all(x["method"] == "POST" and x["url"] == "/v1/chat/completions" and x["body"]["model"] == "fake-model"
               and x["body"]["response_format"]["type"] == "json_schema" for x in lines)
    assert {s.teacher for s in seeded.samples(origin="synth")} == {"hosted"}


def test_expired_batch_leaves_the_round_incomplete_and_the_next_run_asks_for_the_rest(seeded, tmp_path):
    with fake_batch_api.serve("expire") as (url, state):
        fin = _round(seeded, url, tmp_path, n=12)
        assert fin.status == "incomplete"
        c = fin.counters
        _invariants(c, seeded, fin.round_id)
        assert c.requests == 5 and c.responses == 2 and c.failed_requests == 3  # the first half answered
        assert "ended expired" in fin.message and "--batch hosted" in fin.message
        assert c.stored == 6
        state.mode = "ok"
        again = _round(seeded, url, tmp_path)  # the same round, resumed: a second batch for the 6 missing
        assert state.created == 2
    assert again.round_id == fin.round_id and again.status == "finished", again.message
    _invariants(again.counters, seeded, again.round_id)
    assert again.counters.stored == 12 and again.counters.requests == 5 + 3  # ceil(6 * 1.25 / 3)
    assert bt.load_job(seeded, fin.round_id).seq == 2


@pytest.mark.parametrize(("mode", "failed"), [("failedlines", 1), ("partial", 2)])
def test_failed_or_missing_lines_are_counted_as_failed_requests(seeded, tmp_path, mode, failed):
    with fake_batch_api.serve(mode) as (url, _):
        fin = _round(seeded, url, tmp_path, n=12)
    c = fin.counters
    _invariants(c, seeded, fin.round_id)
    assert c.failed_requests == failed and c.responses == 5 - failed
    assert c.stored == min(12, (5 - failed) * 3)
    if c.stored < 12:
        assert fin.status == "incomplete"
        assert ("the model crashed" if mode == "failedlines" else "no result") in fin.message


def test_a_running_batch_is_picked_up_by_a_later_process(seeded, tmp_path):
    with fake_batch_api.serve("ok") as (url, state):
        assert _round(seeded, url, tmp_path, wait=False) is None  # submitted; "closing the app"
        r = rounds.unfinished_round(seeded)
        job = bt.load_job(seeded, r.id)
        assert job.status == "in_progress" and job.id
        assert seeded.count(round_id=r.id) == 0
        fin = _round(seeded, url, tmp_path)  # "the next day": the same job, not a new one
        assert state.created == 1
    assert fin.round_id == r.id and fin.status == "finished"
    _invariants(fin.counters, seeded, fin.round_id)


def test_a_batch_that_fails_validation_says_so(seeded, tmp_path):
    with fake_batch_api.serve("invalid") as (url, _), pytest.raises(SynthError, match="failed validation.*line 1"):
        _round(seeded, url, tmp_path)
