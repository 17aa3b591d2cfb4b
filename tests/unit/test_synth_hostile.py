"""Hostile teacher replies: an HTML page with status 200, a JSON body cut off mid-way, JSON that is not a chat
completion, a 200k-character brace-heavy reply. The round goes on, counts each one, finishes (never stays
`running`), and the counters add up; saved counters add up at every moment, also mid-round."""

from __future__ import annotations

import asyncio
import time

import fake_teacher as fake  # tests/fake_teacher.py (tests/ is on pytest's pythonpath)
import pytest

from tuitune.core.synth import rounds
from tuitune.core.synth.engine import RequestFailed, RoundParams, SampleStored, SynthRound
from tuitune.core.synth.teacher import Teacher, TeacherConfig

pytestmark = pytest.mark.timeout(120)


def _adds_up(c: dict) -> bool:
    return c["requests"] == c["responses"] + c["failed_requests"] + c["cancelled_requests"]


def test_hostile_replies_are_counted_and_the_round_finishes(seeded):
    with fake.served("--mode", "hostile") as url:
        cfg = TeacherConfig("fake", url, "fake-model", timeout=5, max_retries=0)
        events = []
        fin = asyncio.run(SynthRound(seeded, Teacher(cfg), RoundParams(n=12, per_request=3, concurrency=2),
                                     on_event=events.append).run())
        served = fake.stats(url)
    c = fin.counters
    assert fin.status == "finished", fin.message
    for kind in ("html", "cutbody", "notchat", "braces"):
        assert served["behaviours"].get(kind, 0) >= 1, (kind, served)
    bad_bodies = sum(served["behaviours"].get(k, 0) for k in ("html", "cutbody", "notchat"))
    assert c.failed_requests == bad_bodies
    assert c.unparseable == served["behaviours"]["braces"]
    assert c.requests == c.responses + c.failed_requests + c.cancelled_requests
    failures = [e.error for e in events if isinstance(e, RequestFailed)]
    assert any("HTML" in f for f in failures), failures
    r = rounds.get_round(seeded, fin.round_id)
    assert r.status == "finished" and r.counters["stored"] == 12 == seeded.count(origin="synth")


def test_html_only_endpoint_fails_the_round_with_advice(seeded):
    with fake.served("--mode", "html") as url:
        cfg = TeacherConfig("fake", url, "fake-model", timeout=5, max_retries=0)
        fin = asyncio.run(SynthRound(seeded, Teacher(cfg), RoundParams(n=4, per_request=2, concurrency=2)).run())
    assert fin.status == "failed" and "HTML" in fin.message and "base_url" in fin.message, fin.message
    r = rounds.get_round(seeded, fin.round_id)
    assert r.status == "failed" and _adds_up(r.counters)


def test_saved_counters_add_up_while_requests_are_in_flight(seeded):
    """What a kill -9 would leave at any moment: the row's counters, read by another connection mid-round."""
    from tuitune.core.data.store import Store

    snapshots = []
    with fake.served("--mode", "ok", "--delay", "0.2") as url:
        cfg = TeacherConfig("fake", url, "fake-model", timeout=5)
        reader = Store(seeded.path)

        def on_event(ev):
            if isinstance(ev, SampleStored):
                snapshots.append(rounds.get_round(reader, ev.sample.round_id).counters)

        fin = asyncio.run(SynthRound(seeded, Teacher(cfg), RoundParams(n=12, per_request=1, concurrency=4),
                                     on_event=on_event).run())
        reader.close()
    assert fin.status == "finished" and len(snapshots) == 12
    bad = [s for s in snapshots if not _adds_up(s)]
    assert not bad, bad[:2]


def test_brace_heavy_reply_does_not_stall_other_requests(seeded):
    """Parsing happens off the event loop or fast: a round with 200k-char brace replies stays quick."""
    with fake.served("--mode", "braces") as url:
        cfg = TeacherConfig("fake", url, "fake-model", timeout=5, max_retries=0)
        t0 = time.perf_counter()
        fin = asyncio.run(SynthRound(seeded, Teacher(cfg), RoundParams(n=4, per_request=2, concurrency=2,
                                                                       max_requests=8)).run())
        took = time.perf_counter() - t0
    assert fin.status == "incomplete" and fin.counters.unparseable == 8
    assert took < 20, took
