"""Several teachers at once: a request goes to a live teacher with room, chosen by weight, and is sent again to
another teacher when the one it went to fails.

Room: fewer requests in flight than the teacher's `concurrency`, and its `rpm` / `tpm` (teachers.yaml) not used up
in the last window (60 s; a request is charged 1 request and its prompt estimate + max_tokens tokens when it is
sent). The limits are a sliding window, exact over any window: a leaky bucket (aiolimiter) lets a burst of the
whole limit in and then refills, so one window can hold up to twice the limit.

Out: a teacher whose request fails with TeacherError (key rejected, model not found, request refused: it is
misconfigured) is taken out at once; one with `max_failures` transient failures in a row (openai.APIError after
the client's own retries, or BadResponse) too. A success resets the count.

    pool = TeacherPool.of([(get_teacher(settings, n), w) for n, w in parse_teacher_spec("a=3,b=1")])
    reply = await pool.complete(messages, temperature=0.8, max_tokens=1024, schema=...)
    reply.teacher  # "a" or "b"
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from tuitune.core.synth.teacher import BadResponse, Reply, Teacher, TeacherConfig, TeacherError

SPEC_HINT = "type teacher names separated by commas, each with an optional weight: a or a,b or a=3,b=1"


def parse_teacher_spec(text: str) -> list[tuple[str, float]]:
    """"a", "a,b", "a=3,b=1" -> [(name, weight)] (weight 1 when not given)."""
    out: list[tuple[str, float]] = []
    for part in text.split(","):
        name, eq, weight_text = part.partition("=")
        name = name.strip()
        if not name:
            raise TeacherError(f"teacher list {text!r} has an empty name; {SPEC_HINT}")
        weight = 1.0
        if eq:
            try:
                weight = float(weight_text)
            except ValueError:
                weight = math.nan
            if not (math.isfinite(weight) and weight > 0):
                raise TeacherError(f"teacher list {text!r}: the weight of {name!r} must be a positive number, got "
                                   f"{weight_text.strip()!r}; {SPEC_HINT}")
        if any(n == name for n, _ in out):
            raise TeacherError(f"teacher list {text!r} names {name!r} twice; name each teacher once")
        out.append((name, weight))
    return out


def estimate_tokens(messages: list[dict]) -> int:
    """A prompt's tokens, estimated from above: UTF-8 bytes / 3 (English is ~4 bytes a token, CJK ~3) + 4 a message."""
    return sum(len(str(m.get("content") or "").encode()) // 3 + 4 for m in messages)


class WindowLimit:
    """At most `limit` units in any `window_s` seconds (a log of what was charged in the last window)."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic):
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self.log: deque[tuple[float, float]] = deque()  # (when, amount), oldest first
        self.used = 0.0

    def _expire(self, now: float) -> None:
        while self.log and self.log[0][0] <= now - self.window_s:
            self.used -= self.log.popleft()[1]

    def has_capacity(self, amount: float = 1) -> bool:
        self._expire(self.clock())
        return self.used + amount <= self.limit

    def wait_s(self, amount: float = 1) -> float:
        """Seconds until `amount` fits (0 when it does now)."""
        now = self.clock()
        self._expire(now)
        free = self.limit - self.used
        if free >= amount:
            return 0.0
        for when, charged in self.log:  # oldest first: the charges that leave the window next
            free += charged
            if free >= amount:
                return max(when + self.window_s - now, 0.0)
        return math.inf  # more than the whole limit: never

    def charge(self, amount: float = 1) -> None:
        now = self.clock()
        self._expire(now)
        self.log.append((now, amount))
        self.used += amount


@dataclass(eq=False)
class _Member:
    teacher: Teacher
    weight: float
    rpm: WindowLimit | None
    tpm: WindowLimit | None
    requests: int = 0  # attempts sent
    responses: int = 0
    failed: int = 0
    rerouted: int = 0  # failed attempts that were sent again to another teacher
    in_flight: int = 0
    in_a_row: int = 0  # consecutive transient failures
    out: str = ""  # why it was taken out ("" = live)

    @property
    def name(self) -> str:
        return self.teacher.config.name

    def fits(self, tokens: int) -> bool:
        return self.tpm is None or tokens <= self.tpm.limit

    def room(self, tokens: int) -> bool:
        c = self.teacher.config.concurrency
        return ((c is None or self.in_flight < c) and (self.rpm is None or self.rpm.has_capacity(1))
                and (self.tpm is None or self.tpm.has_capacity(tokens)))

    def rate_wait_s(self, tokens: int) -> float | None:
        """Seconds until its rate limits let this request in, when only they hold it (None: concurrency does)."""
        c = self.teacher.config.concurrency
        if c is not None and self.in_flight >= c:
            return None
        return max(self.rpm.wait_s(1) if self.rpm else 0.0, self.tpm.wait_s(tokens) if self.tpm else 0.0)


class TeacherPool:
    """Teachers shared by weight, within each one's concurrency / rpm / tpm, with failover. Has Teacher's
    interface (`config`, `complete`, `close`), so a pool of one stands in for a Teacher."""

    def __init__(self, teachers: list[tuple[Teacher, float]], *, max_failures: int = 3, window_s: float = 60.0,
                 on_out: Callable[[str, str], None] | None = None):
        if not teachers:
            raise TeacherError("a teacher pool needs at least one teacher")
        names = [t.config.name for t, _ in teachers]
        if len(set(names)) != len(names):
            raise TeacherError(f"a teacher pool names a teacher twice ({', '.join(names)}); name each once")
        for t, w in teachers:
            if not (isinstance(w, int | float) and math.isfinite(w) and w > 0):
                raise TeacherError(f"teacher {t.config.name!r}: weight must be a positive number, got {w!r}")
        self.members = [
            _Member(t, float(w), WindowLimit(t.config.rpm, window_s) if t.config.rpm else None,
                    WindowLimit(t.config.tpm, window_s) if t.config.tpm else None)
            for t, w in teachers]
        self.max_failures, self.window_s, self.on_out = max_failures, window_s, on_out
        self._changed = asyncio.Event()  # set (and replaced) when a request ends or a teacher is taken out

    @classmethod
    def of(cls, configs: list[tuple[TeacherConfig, float]], **kw) -> TeacherPool:
        """A pool with one Teacher client per config."""
        return cls([(Teacher(c), w) for c, w in configs], **kw)

    @property
    def config(self) -> TeacherConfig:
        return self.members[0].teacher.config

    @property
    def configs(self) -> list[TeacherConfig]:
        return [m.teacher.config for m in self.members]

    def live(self) -> list[str]:
        return [m.name for m in self.members if not m.out]

    @property
    def rerouted(self) -> int:
        return sum(m.rerouted for m in self.members)

    def stats(self) -> dict[str, dict]:
        return {m.name: {"requests": m.requests, "responses": m.responses, "failed": m.failed,
                         "rerouted": m.rerouted, "out": m.out, "weight": m.weight} for m in self.members}

    async def complete(self, messages: list[dict], *, temperature: float = 0.8, max_tokens: int = 1024,
                       schema: dict | Callable[[bool], dict] | None = None, schema_name: str = "reply") -> Reply:
        """The reply of the first teacher to answer, each live teacher tried at most once. Raises the last
        transient error when every live teacher failed it, TeacherError when no teacher is live."""
        import openai

        tokens = estimate_tokens(messages) + max_tokens
        tried: set[str] = set()
        last: Exception | None = None  # the last transient error
        previous: _Member | None = None  # the teacher whose failure sends this request on
        while True:
            member = await self._take(tried, tokens)
            if member is None:
                break
            if previous is not None:
                previous.rerouted += 1
            tried.add(member.name)
            chosen = schema(member.teacher.config.supports_json_schema is True) if callable(schema) else schema
            try:
                reply = await member.teacher.complete(messages, temperature=temperature, max_tokens=max_tokens,
                                                      schema=chosen, schema_name=schema_name)
            except TeacherError as e:
                member.failed += 1
                self._take_out(member, str(e))
                previous = member
                continue
            except (openai.APIError, BadResponse) as e:
                member.failed += 1
                member.in_a_row += 1
                last, previous = e, member
                if member.in_a_row >= self.max_failures:
                    self._take_out(member, f"{member.in_a_row} failures in a row, last: {type(e).__name__}: {e}")
                continue
            finally:
                member.in_flight -= 1
                self._notify()
            member.responses += 1
            member.in_a_row = 0
            reply.teacher = member.name
            return reply
        if not self.live():
            raise TeacherError("every teacher is out: " + "; ".join(f"{m.name}: {m.out}" for m in self.members))
        if last is not None:
            raise last
        raise TeacherError(f"the request needs about {tokens} tokens (prompt estimate + max_tokens {max_tokens}), "
                           f"more than the tpm of every live teacher ("
                           + ", ".join(f"{m.name}: {m.tpm.limit}" for m in self.members if not m.out and m.tpm)
                           + "); raise tpm in teachers.yaml or lower max_tokens")

    async def _take(self, tried: set[str], tokens: int) -> _Member | None:
        """A live, untried teacher with room (waiting for one), charged for the request; None when none is left."""
        while True:  # no await between looking and charging: the choice cannot go stale
            candidates = [m for m in self.members if not m.out and m.name not in tried and m.fits(tokens)]
            if not candidates:
                return None
            ready = [m for m in candidates if m.room(tokens)]
            if ready:
                m = min(ready, key=lambda m: (m.requests / m.weight, -m.weight))
                m.requests += 1
                m.in_flight += 1
                if m.rpm:
                    m.rpm.charge(1)
                if m.tpm:
                    m.tpm.charge(tokens)
                return m
            waits = [w for w in (m.rate_wait_s(tokens) for m in candidates) if w is not None]
            timeout = min(waits) + 0.001 if waits else None  # None: until a request ends or a teacher is out
            try:
                await asyncio.wait_for(self._changed.wait(), timeout)
            except TimeoutError:
                pass

    def _notify(self) -> None:
        """Wake every request waiting for room (synchronous, so a cancelled request cannot miss it)."""
        self._changed.set()
        self._changed = asyncio.Event()

    def _take_out(self, member: _Member, reason: str) -> None:
        if member.out:
            return
        member.out = reason
        self._notify()
        if self.on_out is not None:
            self.on_out(member.name, reason)

    async def close(self) -> None:
        for m in self.members:
            await m.teacher.close()
