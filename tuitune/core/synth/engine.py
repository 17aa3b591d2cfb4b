"""Synthesis rounds: the teacher writes new samples from the task, rotating examples (seeds + accepted
samples), the lessons from review and optional topics; many requests in flight (bounded); every sample is
parsed, filtered (length), deduplicated (exact + near, against everything in the project), flagged when its
answer copies an example's (copies.py), and committed to the database at once, together with the round's
counters.

Resume: a round that did not finish (process killed, cancelled, teacher down) is picked up by the next run,
which asks only for what is missing; what was stored is never asked for or stored again.

Two modes: "samples" (the teacher writes instruction + input + output) and "inputs" (the teacher writes only
requests; a second pass has the teacher, or another model, answer each one).

The engine is async and reports typed events (RoundStarted, SampleStored, SampleDropped, RequestFailed,
RoundFinished) to a callback or as an async iterator, so the TUI can drive, observe and cancel it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from pathlib import Path

from tuitune.core.data.dedup import DedupIndex
from tuitune.core.data.samples import Sample
from tuitune.core.data.store import Store
from tuitune.core.synth import prompts, rounds
from tuitune.core.synth.copies import AnswerCopies, flag_copies
from tuitune.core.synth.messages import (
    TOPICS_SCHEMA,
    _example,
    answer_messages,
    build_context,
    generation_messages,
    inputs_schema,
    messages_text,
    samples_schema,
)
from tuitune.core.synth.teacher import BadResponse, Teacher, TeacherError, Unparseable, extract_json, items_of
from tuitune.core.synth.types import (  # noqa: F401 - the engine's public types, re-exported
    COUNTER_NAMES,
    MODES,
    Counters,
    Event,
    RequestFailed,
    RoundFinished,
    RoundParams,
    RoundStarted,
    SampleDropped,
    SampleStored,
    SynthError,
)

OFF_LOOP_CHARS = 20_000  # replies longer than this are parsed off the event loop

# ---- the engine ------------------------------------------------------------------------------------------

def _text(item: dict, *names: str) -> str:
    for n in names:
        v = item.get(n)
        if isinstance(v, str | int | float) and not isinstance(v, bool):
            return str(v).strip()
    return ""


class SynthRound:
    """One synthesis round (new or resumed). `await run()` -> RoundFinished; or `async for ev in events()`.
    `cancel()` stops it; what was stored stays, and the next run resumes the rest."""

    def __init__(self, store: Store, teacher: Teacher, params: RoundParams, *, answerer: Teacher | None = None,
                 project: Path | None = None, on_event: Callable[[Event], None] | None = None,
                 resume: bool = True, teacher_info: dict | None = None):
        params.validate()
        self.store = store
        self.teacher = teacher
        self.answerer = answerer or teacher
        self.params = params
        self.project = project
        self.on_event = on_event
        self.resume = resume
        self.teacher_info = teacher_info or _teacher_info(teacher)
        self.counters = Counters()
        self.round: rounds.Round | None = None
        self._tasks: list[asyncio.Task] = []
        self._cancelled = False
        self._fatal: str = ""
        self._listeners: list[asyncio.Queue] = []
        self._earlier_teachers: dict = {}
        self._incomplete_note = ""  # said after the "incomplete" message (a batch that expired, ...)

    # -- events --
    def _emit(self, ev: Event) -> None:
        if self.on_event:
            self.on_event(ev)
        for q in self._listeners:
            q.put_nowait(ev)

    async def events(self) -> AsyncIterator[Event]:
        """Run the round, yielding its events as they happen (RoundFinished last)."""
        q: asyncio.Queue = asyncio.Queue()
        self._listeners.append(q)
        runner = asyncio.ensure_future(self.run())
        try:
            while True:
                ev = await q.get()
                yield ev
                if isinstance(ev, RoundFinished):
                    break
            await runner
        finally:
            if not runner.done():
                self.cancel()
                await asyncio.gather(runner, return_exceptions=True)
            self._listeners.remove(q)

    def cancel(self) -> None:
        self._cancelled = True
        for t in self._tasks:
            t.cancel()

    # -- setup --
    def _open_round(self) -> tuple[rounds.Round, bool]:
        if self.resume:
            old = rounds.unfinished_round(self.store)
            if old is not None and rounds.stored_in_round(self.store, old.id) < old.requested:
                return old, True
            if old is not None:  # everything was stored; only the finish was lost
                rounds.finish_round(self.store, old.id, old.counters)
        params = {**asdict(self.params), "teacher": self.teacher_info,
                  "answerer": _teacher_info(self.answerer) if self.answerer is not self.teacher else None}
        return rounds.start_round(self.store, self.params.n, params), False

    def _setup(self) -> tuple[int, bool]:
        """Open (or resume) the round and build what every request needs. Returns (round id, resumed)."""
        self.round, resumed = self._open_round()
        rid = self.round.id
        self.counters = Counters.from_dict(self.round.counters) if resumed else Counters()
        self.counters.requested = self.round.requested
        self.counters.sessions += 1
        already = rounds.stored_in_round(self.store, rid)
        self.counters.stored = already
        self.need = self.round.requested
        self.ctx = build_context(self.store, self.params, project=self.project, shuffle_seed=rid * 1000 +
                                 self.counters.sessions + self.params.seed)
        if not self.ctx.pool and not self.ctx.task_description:
            rounds.finish_round(self.store, rid, self.counters.saved(), "failed")
            raise SynthError("no seeds and no task description: add seed examples (import a file as seeds) "
                             "or describe the task first")
        self.task_system = self.ctx.system_prompt
        self.index = DedupIndex(self.params.threshold)
        for s in self.store.samples():
            self.index.add(s)
        # answers the teacher was shown (seeds first): a sample repeating one is stored with a flag (copies.py)
        self.copies = AnswerCopies(sorted(self.ctx.pool, key=lambda s: s.origin != "seed"))
        self._earlier_teachers = dict(self.round.counters.get("teachers") or {}) if resumed else {}
        prompt = messages_text(generation_messages(self.ctx, self.params, 0, self.params.per_request))
        round_params = {**self.round.params, "lessons": self.ctx.lessons}  # what this round was generated with
        rounds.update_round(self.store, rid, prompt=prompt, counters=self._saved(), status="running",
                            params=round_params)
        missing = self.need - already
        self.claimed = already  # stored + inputs being answered
        self.reserved = 0  # samples asked for in requests in flight
        self.requests_this_run = 0
        self.max_requests = self.params.max_requests or (
            3 * math.ceil(max(missing, 1) / self.params.per_request) + self.params.concurrency)
        self.max_failures = self.params.max_consecutive_failures or 2 * self.params.concurrency + 2
        self.consecutive_failures = 0
        self.last_error = ""
        self.sem = asyncio.Semaphore(self.params.concurrency)
        self.cond = asyncio.Condition()
        self._emit(RoundStarted(rid, self.need, already, resumed, prompt))
        return rid, resumed

    def _saved(self) -> dict:
        """The counters as saved with the round, with the requests per teacher when several share the round."""
        d = self.counters.saved()
        stats = getattr(self.teacher, "stats", None)
        if callable(stats):
            d["teachers"] = _add_teachers(self._earlier_teachers, stats())
        return d

    async def run(self) -> RoundFinished:
        rid, _ = self._setup()
        missing = self.need - self.counters.stored
        if missing > 0:
            self._tasks = [asyncio.ensure_future(self._worker()) for _ in range(self.params.concurrency)]
            try:
                await asyncio.gather(*self._tasks)
            except asyncio.CancelledError:
                external = not self._cancelled  # cancelled from outside (e.g. the TUI's worker), not cancel()
                self._cancelled = True
                for t in self._tasks:
                    t.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
                if external:
                    stored = rounds.stored_in_round(self.store, rid)
                    self.counters.stored = stored
                    rounds.finish_round(self.store, rid, self._saved(), "cancelled")
                    raise
            except TeacherError as e:
                self._fatal = str(e)
                for t in self._tasks:
                    t.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
            except Exception as e:  # a bug or the disk: stop the round, keep it resumable, say what happened
                for t in self._tasks:
                    t.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
                with contextlib.suppress(Exception):  # the database may be what failed
                    rounds.finish_round(self.store, rid, self._saved(), "failed")
                raise SynthError(f"round {rid} stopped on an unexpected error ({type(e).__name__}: {e}); what "
                                 f"was stored is kept, run again to resume") from e
        return self._finish()

    def _finish(self) -> RoundFinished:
        rid = self.round.id
        stored = rounds.stored_in_round(self.store, rid)
        self.counters.stored = stored
        status, message = "finished", ""
        if self._cancelled:
            status, message = "cancelled", f"cancelled with {stored} of {self.need} stored; run again to resume"
        elif self._fatal:
            status, message = "failed", self._fatal
        elif self.consecutive_failures and self.consecutive_failures >= min(self.max_failures,
                                                                             self.requests_this_run):
            status = "failed"
            message = (f"{self.consecutive_failures} requests in a row failed (last: {self.last_error}); "
                       f"{stored} of {self.need} stored. Check the teacher endpoint, then run again to resume.")
        elif stored < self.need:
            status = "incomplete"
            message = self._incomplete_note or (
                f"stopped after {self.requests_this_run} requests with {stored} of {self.need} stored "
                f"(the teacher's replies were failing, unparseable or repeating). Run again to resume, "
                f"or try a stronger teacher / higher temperature / topics.")
        rounds.finish_round(self.store, rid, self._saved(), status)
        ev = RoundFinished(rid, status, self.counters, message)
        self._emit(ev)
        return ev

    # -- workers --
    def _done(self) -> bool:
        return (self._cancelled or bool(self._fatal) or self.claimed >= self.need
                or self.requests_this_run >= self.max_requests or self.consecutive_failures >= self.max_failures)

    async def _worker(self) -> None:
        while True:
            async with self.cond:
                while True:
                    if self._done():
                        self.cond.notify_all()
                        return
                    room = self.need - self.claimed - self.reserved
                    if room > 0:
                        break
                    await self.cond.wait()  # enough asked for: wait for requests in flight
                k = min(self.params.per_request, room)
                self.reserved += k
                i = self.counters.requests
                self.counters.requests += 1
                self.requests_this_run += 1
            try:
                await self._generate(i, k)
            finally:
                async with self.cond:
                    self.reserved -= k
                    self.cond.notify_all()

    async def _call(self, teacher: Teacher, messages: list[dict], **kw):
        """One HTTP request (the client retries it); None after a failure, which is counted and reported."""
        import openai

        try:
            async with self.sem:
                reply = await teacher.complete(messages, temperature=self.params.temperature, **kw)
        except asyncio.CancelledError:
            self.counters.cancelled_requests += 1
            raise
        except (openai.APIError, BadResponse) as e:  # 429/5xx/timeouts/resets after the retries, bad bodies
            self.counters.failed_requests += 1
            self.consecutive_failures += 1
            self.last_error = f"{type(e).__name__}: {e}"
            self._emit(RequestFailed(f"{type(e).__name__}: {e}", self.counters))
            return None
        except TeacherError as e:  # misconfiguration: stop the round
            self.counters.failed_requests += 1
            self._emit(RequestFailed(str(e), self.counters))
            raise
        self.counters.responses += 1
        self.consecutive_failures = 0
        return reply

    def schema_for(self, k: int, constrained: bool) -> dict:
        """The JSON schema of a generation request for k records (length bounds only where it is enforced)."""
        samples_mode = self.params.mode == "samples"
        # Bound each string so that k records fit in max_tokens (CJK text can take a token per character).
        n_fields = 3 if samples_mode else 2
        field_chars = max(16, min(self.params.max_chars, self.params.max_tokens // (k * n_fields)))
        return (samples_schema if samples_mode else inputs_schema)(k, field_chars, constrained=constrained)

    def request(self, i: int, k: int) -> tuple[list[dict], str]:
        """Generation request i for k records: (messages, schema name)."""
        return generation_messages(self.ctx, self.params, i, k), "samples" if self.params.mode == "samples" else "inputs"

    async def _generate(self, i: int, k: int) -> None:
        messages, schema_name = self.request(i, k)
        if hasattr(self.teacher, "configs"):  # a pool: each endpoint gets the schema it can enforce
            schema = lambda constrained: self.schema_for(k, constrained)
        else:
            schema = self.schema_for(k, self.teacher.config.supports_json_schema is True)
        reply = await self._call(self.teacher, messages, max_tokens=self.params.max_tokens, schema=schema,
                                 schema_name=schema_name)
        if reply is None:
            self._save_counters()
            return
        await self.take_reply(reply, i)

    async def take_reply(self, reply, i: int) -> None:
        """Parse one generation reply (online or from a batch), check, dedup and store its records."""
        samples_mode = self.params.mode == "samples"
        try:
            if len(reply.text) > OFF_LOOP_CHARS:  # long replies are parsed in a thread: other requests go on
                value, truncated = await asyncio.to_thread(extract_json, reply.text)
            else:
                value, truncated = extract_json(reply.text)
        except Unparseable:
            self.counters.unparseable += 1
            self._save_counters()
            return
        if truncated or reply.finish_reason == "length":
            self.counters.truncated += 1
        items = items_of(value, "samples" if samples_mode else "inputs")
        self.counters.returned += len(items)
        to_answer = []
        writer = getattr(reply, "teacher", "") or self.teacher.config.name
        for item in items:
            sample = self._check(item, needs_output=samples_mode, teacher=writer)
            if sample is None:
                continue
            if samples_mode:
                self._store(sample)
            else:
                self.claimed += 1
                to_answer.append(sample)
        self._save_counters()
        if to_answer:
            await asyncio.gather(*(self._answer(s, i) for s in to_answer))

    def _drop(self, reason: str, instruction: str) -> None:
        setattr(self.counters, reason, getattr(self.counters, reason) + 1)
        self._emit(SampleDropped(reason, instruction, self.counters))

    def _check(self, item, *, needs_output: bool, teacher: str = "") -> Sample | None:
        if not isinstance(item, dict):
            self._drop("invalid", str(item)[:80])
            return None
        instruction = _text(item, "instruction", "question", "prompt", "query")
        input_ = _text(item, "input", "context")
        output = _text(item, "output", "answer", "response") if needs_output else ""
        if not instruction or (needs_output and not output):
            self._drop("invalid", instruction)
            return None
        fields = [instruction, output] if needs_output else [instruction]
        if any(len(f) < self.params.min_chars for f in fields):
            self._drop("too_short", instruction)
            return None
        if any(len(f) > self.params.max_chars for f in (instruction, input_, output)):
            self._drop("too_long", instruction)
            return None
        sample = Sample(instruction=instruction, input=input_, output=output, system=self.task_system,
                        origin="synth", status="pending", round_id=self.round.id, teacher=teacher)
        match = self.index.check(sample)
        if match is not None:
            if match.kind == "near":
                self.counters.near_duplicates += 1
            self._drop("duplicates", instruction)
            return None
        if self.claimed >= self.need:
            self._drop("surplus", instruction)
            return None
        self.index.add(sample, ident=f"round{self.round.id}")
        return sample

    def _store(self, sample: Sample) -> None:
        """Commit the sample and the counters in one transaction (a kill keeps both or neither). A sample
        whose answer repeats an example's is stored with that as its reason (flagged for review)."""
        sample = flag_copies(sample, self.copies)
        with self.store.transaction():
            stored = self.store.add_sample(sample)
            self.counters.stored += 1
            rounds.update_round(self.store, self.round.id, counters=self._saved())
        if self.params.mode == "samples":
            self.claimed += 1
        self._emit(SampleStored(stored, self.counters))

    def _save_counters(self) -> None:
        rounds.update_round(self.store, self.round.id, counters=self._saved())

    async def _answer(self, sample: Sample, i: int) -> None:
        self.counters.answer_requests += 1
        self.counters.requests += 1
        try:
            reply = await self._call(self.answerer, answer_messages(self.ctx, self.params, sample, i),
                                     max_tokens=self.params.answer_max_tokens)
        except asyncio.CancelledError:
            self.claimed -= 1
            raise
        text = (reply.text if reply else "").strip()
        reason = ("answer_failed" if reply is None else "too_short" if len(text) < self.params.min_chars
                  else "too_long" if len(text) > self.params.max_chars else "")
        if reason:
            self.claimed -= 1
            self._drop(reason, sample.instruction)
            self._save_counters()
            return
        self._store(sample.with_(output=text))


def _teacher_info(teacher) -> dict:
    """What the round records about its teacher(s) (never a key)."""
    configs = getattr(teacher, "configs", None)
    if configs and len(configs) > 1:
        stats = teacher.stats()
        return {"name": ",".join(c.name for c in configs),
                "teachers": [{**c.public(), "weight": stats.get(c.name, {}).get("weight", 1)} for c in configs]}
    return (configs[0] if configs else teacher.config).public()


def _add_teachers(earlier: dict, now: dict) -> dict:
    """Per-teacher request counts over a resumed round's sessions (numbers add up; the latest `out` reason wins)."""
    out = {name: dict(v) for name, v in earlier.items()}
    for name, v in now.items():
        acc = out.setdefault(name, {})
        for k, x in v.items():
            if isinstance(x, int | float) and not isinstance(x, bool) and k != "weight":
                acc[k] = acc.get(k, 0) + x
            else:
                acc[k] = x
    return out


async def run_round(store: Store, teacher: Teacher, params: RoundParams, **kw) -> RoundFinished:
    return await SynthRound(store, teacher, params, **kw).run()


async def propose_topics(store: Store, teacher: Teacher, n: int = 8, *, temperature: float = 0.7,
                         project: Path | None = None) -> list[str]:
    """Ask the teacher for n topics/sub-topics the data should cover (the user can edit them before a round)."""
    ctx = build_context(store, RoundParams(), project=project)
    common = {"task_description": ctx.task_description, "examples": [_example(s) for s in ctx.examples_for(0, 4)],
              "n": n, "language_rule": ctx.language_rule, "system_prompt": ctx.system_prompt, "lessons": [],
              "topic": ""}
    msgs = [{"role": "system", "content": prompts.render("synth_system.md.j2", project=project, **common)},
            {"role": "user", "content": prompts.render("synth_topics.md.j2", project=project, **common)}]
    reply = await teacher.complete(msgs, temperature=temperature, max_tokens=400, schema=TOPICS_SCHEMA,
                                   schema_name="topics")
    try:
        value, _ = extract_json(reply.text)
    except Unparseable as e:
        raise SynthError(f"the teacher's topic list could not be parsed ({e}); try again or give the "
                         f"topics yourself") from None
    topics = [str(t).strip() for t in items_of(value, "topics") if isinstance(t, str | int) and str(t).strip()]
    return list(dict.fromkeys(topics))[:n]
