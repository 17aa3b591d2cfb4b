"""Batch rounds: the round's generation requests as one OpenAI Batch JSONL file (`custom_id`, `method`, `url`,
`body`), run either by a hosted Batch API (the openai client's files and batches calls: upload, create, poll,
download; half price, up to 24 h) or locally by vLLM's offline batch runner (`run_batch`) on a local model.

The job (kind, id, the request file, what each custom_id asked for) is stored with the round (rounds.batch), so
closing the app and coming back the next day picks the same job up. The replies go through the online round's own
parsing, checks, dedup and counters (SynthRound.take_reply), all committed in ONE transaction with the job marked
collected: a kill during collection stores nothing twice. A batch that expired, was cancelled or has failed lines
leaves the round incomplete; the next run asks (in a new batch) only for what is still missing."""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tuitune.core.synth.teacher import Reply
from tuitune.core.synth.types import RoundFinished, SynthError

KINDS = ("hosted", "local")
ENDPOINT = "/v1/chat/completions"
SLACK = 1.25  # requests for 25% more samples than missing: dedup and bad records take some, surplus is dropped
TERMINAL = ("completed", "failed", "expired", "cancelled")
BATCH_DIR = "batches"


@dataclass
class BatchJob:
    kind: str  # hosted / local
    id: str = ""  # the hosted batch id ("" for local until it ran)
    input: str = ""  # the request file (in the project's batches/ folder)
    output: str = ""  # local: the runner's output file
    status: str = "new"  # new / submitted / <the API's status> / collected
    requests: dict[str, int] = field(default_factory=dict)  # custom_id -> records asked for
    submitted_at: float = 0.0
    counts: dict = field(default_factory=dict)  # the API's request_counts (total/completed/failed)
    seq: int = 1  # the round's batch number (a round that needs more asks again in batch seq+1)

    def to_dict(self) -> dict:
        return asdict(self)


def load_job(store, round_id: int) -> BatchJob | None:
    row = store.conn.execute("SELECT batch FROM rounds WHERE id = ?", (round_id,)).fetchone()
    data = json.loads(row[0] or "{}") if row else {}
    return BatchJob(**{k: v for k, v in data.items() if k in BatchJob.__dataclass_fields__}) if data else None


def save_job(store, round_id: int, job: BatchJob) -> None:
    with store.transaction():
        store.conn.execute("UPDATE rounds SET batch = ? WHERE id = ?", (json.dumps(job.to_dict()), round_id))


def request_lines(engine, model: str, n_requests: int, *, constrained: bool, first: int = 0) -> list[dict]:
    """The Batch API lines of n generation requests (request numbers first.., so examples keep rotating)."""
    lines = []
    p = engine.params
    for j in range(n_requests):
        i = first + j
        k = p.per_request
        messages, schema_name = engine.request(i, k)
        body = {"model": model, "messages": messages, "temperature": p.temperature, "max_tokens": p.max_tokens}
        if constrained:
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": schema_name, "schema": engine.schema_for(k, True), "strict": True}}
        lines.append({"custom_id": f"round{engine.round.id}-req{i}-k{k}", "method": "POST", "url": ENDPOINT,
                      "body": body})
    return lines


def parse_output(text: str) -> dict[str, tuple[Reply | None, str]]:
    """custom_id -> (the reply, "") or (None, the error) for every line of an output or error file."""
    out: dict[str, tuple[Reply | None, str]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            cid = rec["custom_id"]
        except (ValueError, KeyError, TypeError):
            out[f"?line{n}"] = (None, f"output line {n} is not a batch result")
            continue
        resp = rec.get("response") or {}
        err = rec.get("error")
        body = resp.get("body") if isinstance(resp, dict) else None
        if err or not isinstance(resp, dict) or resp.get("status_code") != 200 or not isinstance(body, dict):
            what = (err or {}).get("message") if isinstance(err, dict) else err
            if not what and isinstance(body, dict):
                what = (body.get("error") or {}).get("message") if isinstance(body.get("error"), dict) else None
            out[cid] = (None, str(what or f"status {resp.get('status_code') if isinstance(resp, dict) else '?'}"))
            continue
        try:
            choice = body["choices"][0]
            text_ = choice["message"]["content"] or ""
            out[cid] = (Reply(text_, choice.get("finish_reason"), (body.get("usage") or {}).get("completion_tokens")
                              or 0, structured=True, teacher=""), "")
        except (KeyError, IndexError, TypeError):
            out[cid] = (None, "the result is not a chat completion")
    return out


# ---- runners ---------------------------------------------------------------------------------------------

class HostedRunner:
    """A hosted Batch API through the teacher's openai client (its base_url and key)."""

    kind = "hosted"

    def __init__(self, teacher, *, poll_s: float = 30.0, window: str = "24h"):
        self.teacher = teacher
        self.poll_s = poll_s
        self.window = window

    @property
    def model(self) -> str:
        return self.teacher.config.model

    @property
    def constrained(self) -> bool:
        return self.teacher.config.supports_json_schema is True

    async def submit(self, job: BatchJob, round_id: int) -> None:
        client = self.teacher.client
        path = Path(job.input)
        f = await client.files.create(file=(path.name, path.read_bytes()), purpose="batch")
        b = await client.batches.create(input_file_id=f.id, endpoint=ENDPOINT, completion_window=self.window,
                                        metadata={"tuitune_round": str(round_id)})
        job.id, job.status, job.submitted_at = b.id, b.status or "validating", time.time()

    async def wait(self, job: BatchJob, on_status: Callable[[BatchJob], None] | None = None,
                   wait: bool = True) -> str:
        """Poll until the batch ends; returns the output text (output and error files joined) or "" when
        `wait` is False and it is still running."""
        client = self.teacher.client
        while True:
            b = await client.batches.retrieve(job.id)
            job.status = b.status
            rc = getattr(b, "request_counts", None)
            if rc is not None:
                job.counts = {"total": rc.total, "completed": rc.completed, "failed": rc.failed}
            if on_status:
                on_status(job)
            if b.status in TERMINAL:
                break
            if not wait:
                return ""
            await asyncio.sleep(self.poll_s)
        if b.status == "failed" and not (b.output_file_id or b.error_file_id):
            errors = getattr(getattr(b, "errors", None), "data", None) or []
            detail = "; ".join(f"line {e.line}: {e.message}" if getattr(e, "line", None) else str(e.message)
                               for e in errors[:3])
            raise SynthError(f"the hosted batch {job.id} failed validation ({detail or 'no detail given'}); "
                             f"the request file is {job.input}")
        parts = []
        for fid in (b.output_file_id, b.error_file_id):
            if fid:
                parts.append((await client.files.content(fid)).text)
        return "\n".join(parts)


class LocalRunner:
    """vLLM's offline batch runner on a local model folder (the embedded model by default)."""

    kind = "local"

    def __init__(self, env: dict[str, str], model_dir: Path, served_name: str, log_path: Path, *,
                 max_model_len: int = 2048):
        self._env = env  # the environment vLLM runs with (serving builds it: KV cache, threads, GPUs)
        self.model_dir = Path(model_dir)
        self.served_name = served_name
        self.log_path = Path(log_path)
        self.max_model_len = max_model_len
        self.proc: asyncio.subprocess.Process | None = None

    model = property(lambda self: self.served_name)
    constrained = True  # vLLM enforces JSON schemas

    def command(self, job: BatchJob) -> list[str]:
        return [sys.executable, "-m", "vllm.entrypoints.openai.run_batch", "-i", job.input, "-o", job.output,
                "--model", str(self.model_dir), "--served-model-name", self.served_name,
                "--max-model-len", str(self.max_model_len), "--enforce-eager"]

    def env(self) -> dict[str, str]:
        return dict(self._env)

    async def submit(self, job: BatchJob, round_id: int) -> None:
        job.output = str(Path(job.input).with_suffix(".out.jsonl"))
        job.id = Path(job.output).name
        job.status, job.submitted_at = "submitted", time.time()

    async def wait(self, job: BatchJob, on_status: Callable[[BatchJob], None] | None = None,
                   wait: bool = True) -> str:
        import os

        out = Path(job.output)
        if job.status != "completed" or not out.exists():
            out.unlink(missing_ok=True)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            job.status = "in_progress"
            if on_status:
                on_status(job)
            with open(self.log_path, "ab") as log:  # noqa: ASYNC230 - a log file opened once
                log.write(f"\n==== tuitune: run_batch {job.input} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
                log.flush()
                self.proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "tuitune.core.serving.guard", str(os.getpid()), "--", *self.command(job),
                    stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT, env=self.env(),
                    start_new_session=True)
                try:
                    code = await self.proc.wait()
                except asyncio.CancelledError:
                    self.proc.kill()
                    await self.proc.wait()
                    raise
            if code != 0 or not out.exists():
                tail = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-12:]
                job.status = "failed"
                raise SynthError(f"vLLM's batch runner exited with code {code} (log {self.log_path}):\n"
                                 + "\n".join(tail))
            job.status = "completed"
            if on_status:
                on_status(job)
        return out.read_text(encoding="utf-8")


# ---- the round -------------------------------------------------------------------------------------------

async def run_batch_round(engine, runner, *, project: Path, wait: bool = True,
                          on_status: Callable[[BatchJob], None] | None = None) -> RoundFinished | None:
    """Run (or pick up) the round as a batch job. Returns the finished round, or None when `wait` is False and
    the hosted batch is still running (the job stays with the round; run again later to collect it)."""
    if engine.params.mode != "samples":
        raise SynthError("--batch generates whole samples (--mode samples); --mode inputs needs a second pass "
                         "of answers and runs online only")
    rid, _ = engine._setup()
    store = engine.store
    job = load_job(store, rid)
    if job is not None and job.kind != runner.kind and job.status not in ("collected",):
        raise SynthError(f"round {rid} has a {job.kind} batch ({job.id or job.input}, {job.status}); pick it up "
                         f"with --batch {job.kind}, or start a new round with --fresh")
    if job is None or job.status == "collected":
        missing = engine.need - engine.counters.stored
        if missing <= 0:
            return engine._finish()
        n_requests = math.ceil(missing * SLACK / engine.params.per_request)
        seq = job.seq + 1 if job else 1
        folder = Path(project) / BATCH_DIR
        folder.mkdir(parents=True, exist_ok=True)
        lines = request_lines(engine, runner.model, n_requests, constrained=runner.constrained,
                              first=engine.counters.requests)
        path = folder / f"round{rid}-batch{seq}.jsonl"
        from tuitune.core import atomic

        atomic.write_text(path, "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
        job = BatchJob(runner.kind, input=str(path), seq=seq,
                       requests={x["custom_id"]: int(x["custom_id"].rsplit("-k", 1)[1]) for x in lines})
        await runner.submit(job, rid)
        save_job(store, rid, job)
    if on_status:
        on_status(job)
    text = await runner.wait(job, on_status, wait)
    if not text and job.status not in TERMINAL:
        save_job(store, rid, job)
        return None
    await _collect(engine, job, text)
    return engine._finish()


async def _collect(engine, job: BatchJob, text: str) -> None:
    """Every reply through the online parsing; counters, samples and `collected` in one transaction."""
    results = parse_output(text)
    c = engine.counters
    store = engine.store
    ended = job.status
    answered = failed = 0
    with store.transaction():
        for n, cid in enumerate(job.requests):
            reply, error = results.get(cid, (None, f"no result (the batch ended {ended})"))
            c.requests += 1
            if reply is None:
                c.failed_requests += 1
                failed += 1
                engine.last_error = error
                continue
            c.responses += 1
            answered += 1
            await engine.take_reply(reply, n)
        job.status = "collected"
        job.counts = {**job.counts, "ended": ended, "answered": answered, "failed": failed}
        store.conn.execute("UPDATE rounds SET batch = ? WHERE id = ?", (json.dumps(job.to_dict()), engine.round.id))
        engine._save_counters()
    missing = engine.need - store.count(round_id=engine.round.id)
    if missing > 0:
        last = f" (last: {engine.last_error})" if failed else ""
        engine._incomplete_note = (
            f"the {job.kind} batch ended {ended}: {answered} of {len(job.requests)} requests answered, {failed} "
            f"failed{last}; {missing} samples are still missing: run `tuitune synth --batch {job.kind}` again to "
            f"ask for them in a new batch")
