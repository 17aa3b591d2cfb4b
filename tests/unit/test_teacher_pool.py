"""The teacher pool: load shared by weight, per-teacher concurrency / rpm / tpm over any window, failover when a
teacher's server dies or rejects the key, teacher lists ("a=3,b=1") and the limits in teachers.yaml. Against
real local HTTP servers: tests/fake_teacher.py (a subprocess, killed mid-run) and tests/fake_limits.py (records
requests in flight and what each request asked for)."""

from __future__ import annotations

import asyncio
import socket
import time

import fake_teacher  # tests/ is on pytest's pythonpath
import openai
import pytest
from fake_limits import serve

from tuitune.core.synth.teacher import (
    TeacherConfig,
    TeacherError,
    TeachersFileError,
    load_teachers,
    save_teacher,
)
from tuitune.core.synth.teacher_pool import TeacherPool, WindowLimit, estimate_tokens, parse_teacher_spec
from tuitune.settings import Settings

MSG = [{"role": "user", "content": "Say hi."}]


def cfg(name: str, url: str, **kw) -> TeacherConfig:
    return TeacherConfig(name, url, "m", timeout=5.0, max_retries=0, **kw)


def pool(*members: tuple[TeacherConfig, float], **kw) -> TeacherPool:
    return TeacherPool.of(list(members), **kw)


async def calls(p: TeacherPool, n: int, max_tokens: int = 8):
    return await asyncio.gather(*(p.complete(MSG, temperature=0.0, max_tokens=max_tokens) for _ in range(n)))


def free_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # closed again: connections are refused


def most_in_a_window(times: list[float], window: float, amounts: list[float] | None = None) -> float:
    amounts = amounts or [1.0] * len(times)
    return max(sum(a for u, a in zip(times, amounts, strict=True) if t <= u < t + window) for t in times)


def test_weights_share_the_load_and_replies_name_their_teacher():
    async def main(a, b):
        p = pool((cfg("a", a.url), 3), (cfg("b", b.url), 1))
        try:
            replies = await calls(p, 40)
        finally:
            await p.close()
        return replies, p.stats()

    with serve() as a, serve() as b:
        replies, stats = asyncio.run(main(a, b))
        assert (a.posts, b.posts) == (stats["a"]["requests"], stats["b"]["requests"])
    by = [r.teacher for r in replies]
    assert 27 <= by.count("a") <= 33 and by.count("a") + by.count("b") == 40
    assert stats["a"] == {"requests": by.count("a"), "responses": by.count("a"), "failed": 0, "rerouted": 0,
                          "out": "", "weight": 3.0}


def test_concurrency_is_never_exceeded():
    async def main(a, b):
        p = pool((cfg("a", a.url, concurrency=1), 1), (cfg("b", b.url, concurrency=2), 1))
        try:
            return await calls(p, 12)
        finally:
            await p.close()

    with serve(delay=0.08) as a, serve(delay=0.08) as b:
        replies = asyncio.run(main(a, b))
        assert len(replies) == 12 and a.posts + b.posts == 12
        assert a.max_in_flight == 1 and b.max_in_flight == 2  # b shows the fake does see overlap


@pytest.mark.parametrize("limits, n, max_tokens", [({"rpm": 5}, 15, 8), ({"tpm": 1000}, 9, 300)])
def test_rate_limits_hold_over_any_window(limits, n, max_tokens):
    window = 1.0
    cost = estimate_tokens(MSG) + max_tokens

    sent = []  # when the pool handed each request to the HTTP client (the server sees them later, with jitter)

    async def main(a):
        p = pool((cfg("a", a.url, **limits), 1), window_s=window)
        teacher = p.members[0].teacher
        send = teacher.complete

        async def recorded(*args, **kw):
            sent.append(time.monotonic())
            return await send(*args, **kw)

        teacher.complete = recorded
        try:
            return await calls(p, n, max_tokens=max_tokens)
        finally:
            await p.close()

    with serve() as a:
        start, cpu = time.monotonic(), time.process_time()
        replies = asyncio.run(main(a))
        took, cpu = time.monotonic() - start, time.process_time() - cpu
        assert [b["max_tokens"] for b in a.bodies] == [max_tokens] * n
    assert len(replies) == n == len(sent)
    # what one window lets in: 5 requests, or 3 requests of `cost` tokens (windows 0.05 s short: the event loop's
    # timer slack); a leaky bucket (aiolimiter) would let 9 requests into one window
    per_window = limits.get("rpm") or limits["tpm"] // cost
    assert most_in_a_window(sent, window - 0.05) <= per_window
    if "tpm" in limits:
        assert most_in_a_window(sent, window - 0.05, [cost] * n) <= limits["tpm"]
    windows = -(-n // per_window)  # the limit is used in full: 3 windows' worth, not fewer requests per window
    assert (windows - 1) * window - 0.05 <= took < (windows + 1.5) * window
    assert cpu < 0.5 * took  # waiting for the window is a sleep, not a busy loop


def test_window_limit_waits_for_the_oldest_charge_to_leave():
    now = [0.0]
    lim = WindowLimit(10, 60.0, clock=lambda: now[0])
    lim.charge(4)
    now[0] = 10.0
    lim.charge(6)
    assert not lim.has_capacity(1) and lim.wait_s(1) == 50.0 and lim.wait_s(4) == 50.0 and lim.wait_s(5) == 60.0
    assert lim.wait_s(7) == 60.0 and lim.wait_s(11) == float("inf")
    now[0] = 60.0
    assert lim.has_capacity(4) and not lim.has_capacity(5)


def test_a_request_larger_than_every_tpm_says_what_to_change():
    async def main(a):
        p = pool((cfg("a", a.url, tpm=100), 1))
        try:
            await p.complete(MSG, temperature=0.0, max_tokens=500)
        finally:
            await p.close()

    with serve() as a:
        with pytest.raises(TeacherError, match="raise tpm in teachers.yaml or lower max_tokens"):
            asyncio.run(main(a))
        assert a.posts == 0


def test_a_killed_teacher_is_taken_out_and_every_request_still_succeeds():
    outs = []

    async def main(proc, a_url, b_url):
        p = pool((cfg("a", a_url), 1), (cfg("b", b_url), 1), on_out=lambda name, why: outs.append((name, why)))
        try:
            first = await calls(p, 10)
            proc.kill()
            proc.wait()
            later = [await p.complete(MSG, temperature=0.0, max_tokens=8) for _ in range(20)]
        finally:
            await p.close()
        return first, later, p.stats(), p.live(), p.rerouted

    proc, a_url = fake_teacher.spawn("--mode", "ok")
    try:
        with fake_teacher.served("--mode", "ok") as b_url:
            first, later, stats, live, rerouted = asyncio.run(main(proc, a_url, b_url))
    finally:
        proc.kill()
        proc.wait()
    assert {r.teacher for r in first} == {"a", "b"}
    assert [r.teacher for r in later] == ["b"] * 20
    assert stats["a"]["failed"] == 3 and stats["a"]["out"].startswith("3 failures in a row, last: APIConnectionError")
    assert outs == [("a", stats["a"]["out"])] and live == ["b"]
    assert sum(s["responses"] for s in stats.values()) == 30
    assert sum(s["failed"] for s in stats.values()) == sum(s["rerouted"] for s in stats.values()) == rerouted == 3
    assert stats["a"]["requests"] == stats["a"]["responses"] + 3


def test_a_rejected_key_is_out_at_once_and_both_out_names_both_reasons():
    async def main(a):
        p = pool((cfg("a", a.url), 2), (cfg("b", free_port_url()), 1), max_failures=2)
        try:
            with pytest.raises(openai.APIConnectionError):  # a is out (401), b failed once and is still live
                await p.complete(MSG, temperature=0.0, max_tokens=8)
            assert p.stats()["a"]["out"] and "rejected the API key" in p.stats()["a"]["out"] and p.live() == ["b"]
            with pytest.raises(TeacherError, match="every teacher is out") as e:
                await p.complete(MSG, temperature=0.0, max_tokens=8)
        finally:
            await p.close()
        return str(e.value), p.stats()

    with serve(status=401) as a:
        message, stats = asyncio.run(main(a))
        assert a.posts == 1
    assert "a: teacher 'a' rejected the API key" in message
    assert "b: 2 failures in a row, last: APIConnectionError" in message
    assert (stats["a"]["failed"], stats["b"]["failed"], stats["a"]["rerouted"], stats["b"]["rerouted"]) == (1, 2, 1, 0)


def test_schema_may_depend_on_the_chosen_teacher():
    seen = []

    def schema(constrained: bool) -> dict:
        seen.append(constrained)
        return {"type": "object", "properties": {"constrained": {"const": constrained}}}

    async def main(a, b):
        p = pool((cfg("a", a.url, supports_json_schema=True), 1), (cfg("b", b.url, supports_json_schema="auto"), 1))
        try:
            return [(await p.complete(MSG, temperature=0.0, max_tokens=8, schema=schema)).teacher for _ in range(4)]
        finally:
            await p.close()

    with serve() as a, serve() as b:
        teachers = asyncio.run(main(a, b))
        sent = [body["response_format"]["json_schema"]["schema"]["properties"]["constrained"]["const"]
                for body in a.bodies + b.bodies]
    assert seen == [t == "a" for t in teachers] and sorted(sent) == sorted(seen) and set(teachers) == {"a", "b"}


def test_a_pool_of_one_stands_in_for_a_teacher():
    c = cfg("only", "http://127.0.0.1:9/v1", concurrency=2)
    p = TeacherPool.of([(c, 1)])
    assert p.config is c and p.configs == [c] and p.config.public()["concurrency"] == 2
    asyncio.run(p.close())
    with pytest.raises(TeacherError, match="twice"):
        TeacherPool.of([(c, 1), (c, 2)])


@pytest.mark.parametrize("text, expected", [
    ("a", [("a", 1.0)]),
    ("a,b", [("a", 1.0), ("b", 1.0)]),
    (" a=3 , b=1 ", [("a", 3.0), ("b", 1.0)]),
    ("deepseek=0.5,local", [("deepseek", 0.5), ("local", 1.0)]),
])
def test_teacher_spec(text, expected):
    assert parse_teacher_spec(text) == expected


@pytest.mark.parametrize("text, match", [
    ("", "empty name"), ("a,,b", "empty name"), ("=2", "empty name"),
    ("a=0", "positive number"), ("a=-1", "positive number"), ("a=x", "positive number"), ("a=", "positive number"),
    ("a=inf", "positive number"), ("a=nan", "positive number"),
    ("a,b,a=2", "names 'a' twice"),
])
def test_teacher_spec_errors_say_what_to_type(text, match):
    with pytest.raises(TeacherError, match=match) as e:
        parse_teacher_spec(text)
    assert "twice" in match or "a=3,b=1" in str(e.value)


@pytest.fixture
def settings(tmp_path, monkeypatch):
    for var in ("TUITUNE_TEACHER_BASE_URL", "TUITUNE_TEACHER_MODEL"):
        monkeypatch.delenv(var, raising=False)
    return Settings(home=tmp_path / "home", project=tmp_path / "proj")


@pytest.mark.parametrize("field, value", [("concurrency", "0"), ("rpm", '"x"'), ("tpm", "1.5"), ("rpm", "true")])
def test_teachers_yaml_limit_errors_name_file_teacher_and_field(settings, field, value):
    path = settings.home / "teachers.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(f"teachers:\n  fast:\n    base_url: http://h/v1\n    model: m\n    {field}: {value}\n")
    with pytest.raises(TeachersFileError) as e:
        load_teachers(settings)
    assert str(e.value).startswith(f"{path}: teacher 'fast': {field}: expected a whole number of at least 1")


def test_teachers_yaml_limits_round_trip(settings):
    save_teacher(settings, TeacherConfig("fast", "http://h/v1", "m", concurrency=4, rpm=60))
    save_teacher(settings, TeacherConfig("plain", "http://h/v1", "m"))
    text = (settings.home / "teachers.yaml").read_text()
    assert "tpm" not in text and "null" not in text
    loaded = load_teachers(settings)
    assert (loaded["fast"].concurrency, loaded["fast"].rpm, loaded["fast"].tpm) == (4, 60, None)
    assert (loaded["plain"].concurrency, loaded["plain"].rpm) == (None, None)
    (settings.home / "teachers.yaml").write_text("teachers:\n  n:\n    base_url: http://h/v1\n    model: m\n"
                                                 "    rpm: null\n")
    assert load_teachers(settings)["n"].rpm is None
