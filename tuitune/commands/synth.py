"""The synth sub-command: a synthesis round (online, over several teachers, or as a batch job), then the judge."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import click

from tuitune.commands.common import fail, open_store, progress_bar, settings

LOCK_NAME = ".synth.lock"
LOCAL_BATCH_URL = "http://vllm-run-batch.invalid/v1"  # recorded with a local batch round; never contacted


def _teacher_config(ctx, teacher, base_url, model, api_key_env, json_schema, timeout, retries=None):
    from tuitune.core.synth.teacher import TeacherConfig, TeacherError, TeachersFileError, get_teacher

    try:
        if base_url:
            if not model:
                fail("--base-url needs --model (the model name as the endpoint knows it)")
            cfg = TeacherConfig(teacher or "cli", base_url, model, api_key_env or "")
        else:
            cfg = get_teacher(settings(ctx), teacher)
    except TeacherError as e:
        fail(str(e), code=2 if isinstance(e, TeachersFileError) else 1)
    if json_schema != "config":
        cfg.supports_json_schema = {"auto": "auto", "on": True, "off": False}[json_schema]
    if timeout:
        cfg.timeout = timeout
    if retries is not None:
        cfg.max_retries = retries
    return cfg


def _print_counters(c, status: str, message: str) -> None:
    click.echo(f"round {status}: stored {c.stored}/{c.requested}  requests {c.requests} (failed {c.failed_requests})  "
               f"returned {c.returned}  unparseable {c.unparseable}  duplicates {c.duplicates} "
               f"(near {c.near_duplicates})  too short {c.too_short}  too long {c.too_long}  invalid {c.invalid}"
               + (f"  answers failed {c.answer_failed}" if c.answer_requests else ""))
    if message:
        click.echo(message, err=status != "finished")


@click.command()
@click.option("--n", "n", type=int, default=20, show_default=True, help="Samples to generate.")
@click.option("--teacher", help="Named teacher from teachers.yaml in the tuitune home (default: `default` if "
              "TUITUNE_TEACHER_BASE_URL is set, else `embedded`, the local model served by vLLM). Several share "
              "the round: a,b or by weight a=3,b=1 (each within its own concurrency/rpm/tpm; one that keeps "
              "failing is taken out and the others carry on).")
@click.option("--judge", "judge_spec", help="The teacher(s) that score every new sample (default: the teacher).")
@click.option("--no-judge", is_flag=True, help="Do not score the new samples (`tuitune judge` can do it later).")
@click.option("--batch", type=click.Choice(["hosted", "local"]), help="Generate the round as one batch job: "
              "hosted = the teacher's Batch API (half price, up to 24 h; picked up again by the next run), local = "
              "vLLM's offline batch runner on --batch-model.")
@click.option("--batch-model", help="--batch local: the model folder or registered name (default: the embedded "
              "model).")
@click.option("--no-wait", is_flag=True, help="--batch hosted: submit (or check) the batch and exit; run again to "
              "collect it.")
@click.option("--poll", type=float, default=30.0, show_default=True, help="--batch hosted: seconds between checks.")
@click.option("--base-url", help="Use this OpenAI-compatible endpoint instead of a named teacher.")
@click.option("--model", help="Model name at --base-url.")
@click.option("--api-key-env", help="Name of the environment variable holding the key for --base-url.")
@click.option("--json-schema", type=click.Choice(["config", "auto", "on", "off"]), default="config",
              show_default=True, help="Ask for JSON-schema output (auto: try, fall back to parsing text).")
@click.option("--mode", type=click.Choice(["samples", "inputs"]), default="samples", show_default=True,
              help="samples: teacher writes whole samples; inputs: it writes requests, then answers each one.")
@click.option("--answer-teacher", help="In --mode inputs, the named teacher that answers (default: the teacher).")
@click.option("--round-size", type=int, help="Split --n into rounds of at most this many (each its own round).")
@click.option("--per-request", type=int, default=4, show_default=True, help="Samples asked for per request.")
@click.option("--concurrency", type=int, default=4, show_default=True, help="Requests in flight at most.")
@click.option("--temperature", type=float, default=0.9, show_default=True)
@click.option("--max-tokens", type=int, default=1024, show_default=True, help="Per generation request.")
@click.option("--answer-max-tokens", type=int, default=512, show_default=True, help="Per answer (--mode inputs).")
@click.option("--examples", type=int, default=4, show_default=True, help="Examples shown per request (rotated).")
@click.option("--topic", "topics", multiple=True, help="A topic to cover (repeatable; requests rotate over them).")
@click.option("--topics-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Topics, one per line (e.g. edited output of --propose-topics).")
@click.option("--propose-topics", type=int, metavar="K", help="Print K topics proposed by the teacher and exit.")
@click.option("--threshold", type=float, default=0.8, show_default=True,
              help="Near-duplicate similarity (0-1] above which a new sample is dropped.")
@click.option("--min-chars", type=int, default=2, show_default=True)
@click.option("--max-chars", type=int, default=4000, show_default=True)
@click.option("--timeout", type=float, help="Seconds per request attempt (retried on timeout).")
@click.option("--retries", type=int, help="Retries per request on 429/5xx/timeouts/resets (with backoff).")
@click.option("--no-lessons", is_flag=True, help="Leave the lessons from review out of the prompt.")
@click.option("--fresh", is_flag=True, help="Do not resume an unfinished round: abandon it and start a new one.")
@click.option("--list-teachers", is_flag=True, help="List the configured teachers and exit.")
@click.option("--rounds", "list_rounds", is_flag=True, help="List the rounds with their counters and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the final counters as JSON.")
@click.pass_context
def synth(ctx, n, teacher, judge_spec, no_judge, batch, batch_model, no_wait, poll, base_url, model, api_key_env,
          json_schema, mode, answer_teacher, round_size, per_request, concurrency, temperature, max_tokens,
          answer_max_tokens, examples, topics, topics_file, propose_topics, threshold, min_chars, max_chars, timeout,
          retries, no_lessons, fresh, list_teachers, list_rounds, as_json):
    """Generate new samples with the teacher LLM; they are stored as pending, for `tuitune review`.

    An unfinished round (killed, cancelled, teacher down) is resumed: only the missing samples are asked for.

    Named teachers live in teachers.yaml in the tuitune home (TUITUNE_HOME); keys stay in the environment:

    \b
        teachers:
          deepseek:
            base_url: https://api.deepseek.com/v1
            model: deepseek-chat
            api_key_env: DEEPSEEK_API_KEY
            supports_json_schema: false   # true / false / auto
    """
    from filelock import FileLock, Timeout

    from tuitune.core.synth import rounds as rounds_mod
    from tuitune.core.synth.engine import RoundParams, SynthError
    from tuitune.core.synth.teacher import EMBEDDED_HINT, TeacherError, TeachersFileError, load_teachers

    st = settings(ctx)
    if list_teachers:
        try:
            for name, cfg in load_teachers(st).items():
                where = cfg.base_url or "local vLLM on the embedded model, started for the round"
                key = f"key from ${cfg.api_key_env}" if cfg.api_key_env else "no key"
                click.echo(f"{name:12} {cfg.model or '-':28} {where}  ({key}, json schema: {cfg.supports_json_schema})")
        except TeachersFileError as e:  # bad input, as a bad option is
            fail(str(e), code=2)
        return
    store = open_store(ctx)
    if list_rounds:
        from tuitune.core.curation.round_stats import round_stats, trend

        stats = round_stats(store)
        if as_json:
            click.echo(json.dumps([s.to_dict() for s in stats], ensure_ascii=False))
            return
        for rs in stats:
            click.echo(rs.line())
            if rs.top_reasons:
                click.echo("      rejected for: " + "; ".join(f"{r} ({n})" for r, n in rs.top_reasons))
            if rs.lessons:
                click.echo(f"      generated with {len(rs.lessons)} lessons: " + "; ".join(rs.lessons[:3])
                           + (" ..." if len(rs.lessons) > 3 else ""))
        if trend(stats):
            click.echo(trend(stats))
        if not stats:
            click.echo("No rounds yet: `tuitune synth --n 20` runs the first one.")
        return
    topic_list = list(topics)
    if topics_file:
        topic_list += [t.strip() for t in topics_file.read_text(encoding="utf-8").splitlines() if t.strip()]
    params = RoundParams(n=n, mode=mode, per_request=per_request, concurrency=concurrency, temperature=temperature,
                         max_tokens=max_tokens, answer_max_tokens=answer_max_tokens, examples=examples,
                         topics=topic_list, threshold=threshold, min_chars=min_chars, max_chars=max_chars,
                         use_lessons=not no_lessons)
    try:
        params.validate()
    except SynthError as e:
        fail(str(e), code=2)
    from tuitune.core.synth.teacher_pool import parse_teacher_spec

    if batch and mode != "samples":
        fail("--batch generates whole samples (--mode samples); --mode inputs runs online only", code=2)
    if batch and round_size:
        fail("--batch runs one round per job; leave --round-size out", code=2)
    try:
        spec = parse_teacher_spec(teacher) if teacher and not base_url else [(teacher, 1.0)]
        judge_names = parse_teacher_spec(judge_spec) if judge_spec else None
    except TeacherError as e:
        fail(str(e), code=2)
    if batch and len(spec) > 1:
        fail("--batch sends the round to one teacher's batch runner; name one --teacher", code=2)
    configs = [(_teacher_config(ctx, name, base_url, model, api_key_env, json_schema, timeout, retries), w)
               for name, w in spec]
    cfg = configs[0][0]
    judge_cfgs = None if no_judge else (
        [(_teacher_config(ctx, name, None, None, None, json_schema, timeout, retries), w) for name, w in judge_names]
        if judge_names else configs)
    answer_cfg = _teacher_config(ctx, answer_teacher, None, None, None, json_schema, timeout, retries) \
        if answer_teacher else None
    lock = FileLock(str(st.project / LOCK_NAME))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        fail(f"another `tuitune synth` is running in {st.project}; wait for it or stop it first")
    try:
        old = rounds_mod.unfinished_round(store)
        if old is not None and fresh:
            rounds_mod.update_round(store, old.id, status="abandoned")
            click.echo(f"Abandoned unfinished round {old.id} ({store.count(round_id=old.id)}/{old.requested} "
                       f"stored; those samples stay).")
            old = None
        if old is not None and not propose_topics:
            click.echo(f"Resuming round {old.id}: {store.count(round_id=old.id)} of {old.requested} already stored "
                       f"(--n is ignored; use --fresh to start a new round instead).")
        from tuitune.core.serving.pool import EnginePool

        local_batch = batch == "local"
        if (any(c.embedded for c, _ in configs) and not local_batch) or (answer_cfg and answer_cfg.embedded):
            click.echo(EMBEDDED_HINT, err=True)
            click.echo(f"Starting the embedded teacher (vLLM on the embedded model; log in {st.project / 'logs'}) ...",
                       err=True)
        try:
            with EnginePool(st, st.project / "logs") as pool:  # the same builder of the embedded teacher as the TUI's
                runner = _batch_runner(st, batch, batch_model, cfg, poll) if batch else None
                # a local batch runs its own vLLM (run_batch): the teacher is only named, never called
                live = ([(replace(cfg, base_url=LOCAL_BATCH_URL, model=runner.served_name), 1.0)] if local_batch
                        else [(pool.live_teacher(c), w) for c, w in configs])
                live_answer = pool.live_teacher(answer_cfg) if answer_cfg and answer_cfg.name != cfg.name else None
                live_judge = ([(pool.live_teacher(c), w) for c, w in judge_cfgs]
                              if judge_cfgs and (judge_cfgs is not configs or local_batch)
                              else live if judge_cfgs else None)
                code = _run(store, st, live, live_answer, params, propose_topics, old, round_size, as_json,
                            judge=live_judge, runner=runner, wait=not no_wait)
        except TeacherError as e:
            fail(str(e))
        except Exception as e:  # serving errors carry their own advice (log tail, what to do)
            from tuitune.core.serving.vllm import ServingError

            if isinstance(e, ServingError):
                fail(str(e))
            raise
    finally:
        lock.release()
    if code:
        raise SystemExit(code)


def _batch_runner(st, kind, batch_model, cfg, poll):
    """The batch runner: the hosted teacher's Batch API, or vLLM's run_batch on a local model (embedded default)."""
    from tuitune.core.synth.batch import HostedRunner, LocalRunner

    if kind == "hosted":  # through the teacher's own client: built with it in _run
        if cfg.embedded:
            fail("--batch hosted needs a hosted teacher (--teacher NAME from teachers.yaml); for the embedded model "
                 "use --batch local", code=2)
        return HostedRunner(None, poll_s=poll)
    from tuitune.core import models

    if batch_model:
        try:
            path = models.resolve(st.models_dir, batch_model)
        except Exception as e:  # noqa: BLE001 - the resolver's own message names the model and what to do
            fail(f"--batch-model {batch_model}: {e}", code=2)
        name = Path(path).name
    else:
        path, name = models.prepare_embedded(st.models_dir), models.EMBEDDED_NAME
    return LocalRunner(batch_env(st, Path(path)), Path(path), name, st.project / "logs" / "run_batch.log")


def batch_env(st, model: Path) -> dict[str, str]:
    """The environment vLLM's batch runner gets: the server's own (KV cache, threads, GPUs), without any key."""
    from tuitune.core.serving import auth
    from tuitune.core.serving.vllm import VLLMServer

    env = VLLMServer(model, settings=st, log_path=st.project / "logs" / "run_batch.log").env()
    env.pop(auth.KEY_ENV, None)
    return env


def _run(store, st, cfgs, answer_cfg, params, propose_topics, resumed, round_size, as_json, *, judge=None,
         runner=None, wait=True) -> int:
    from tuitune.commands.judge import client_for, judge_round_samples
    from tuitune.core.synth.engine import RoundFinished, RoundStarted, SampleStored, SynthError, SynthRound
    from tuitune.core.synth.engine import propose_topics as propose
    from tuitune.core.synth.teacher import Teacher, TeacherError

    async def main() -> int:
        teacher = client_for(cfgs)
        judge_client = (teacher if judge is cfgs else client_for(judge)) if judge else None
        answerer = Teacher(answer_cfg) if answer_cfg else None
        batch_runner = runner
        if runner is not None and runner.kind == "hosted":
            runner.teacher = teacher  # the hosted Batch API of the round's teacher, with its key
        try:
            if propose_topics:
                for t in await propose(store, teacher, propose_topics, project=st.project):
                    click.echo(t)
                return 0
            sizes = [None] if resumed else _split(params.n, round_size)
            worst = 0
            for size in sizes:
                p = params if size is None else type(params)(**{**params.__dict__, "n": size})
                with progress_bar("synth", total=float(resumed.requested if size is None else p.n)) as update:
                    def on_event(ev, update=update):
                        if isinstance(ev, RoundStarted):
                            update(f"round {ev.round_id}", float(ev.already_stored))
                        elif isinstance(ev, SampleStored):
                            c = ev.counters
                            update(f"round {ev.sample.round_id}: {c.stored}/{c.requested} stored, "
                                   f"{c.duplicates} dup, {c.unparseable} unparseable, {c.failed_requests} failed",
                                   float(c.stored))
                    eng = SynthRound(store, teacher, p, answerer=answerer, project=st.project, on_event=on_event)
                    if batch_runner is not None:
                        fin = await _batch(eng, batch_runner, st, update, wait)
                        if fin is None:
                            return 0
                    else:
                        fin: RoundFinished = await eng.run()
                    update(None, float(fin.counters.stored))
                _print_counters(fin.counters, fin.status, fin.message)
                if len(cfgs) > 1:
                    _print_teachers(store, fin.round_id)
                judged = None
                if judge_client is not None and store.count(round_id=fin.round_id):
                    judged = await judge_round_samples(store, judge_client, st.project, round_id=fin.round_id,
                                                       quiet=as_json)
                if as_json:
                    out = {"round": fin.round_id, "status": fin.status, **fin.counters.to_dict()}
                    if judged is not None:
                        out["judge"] = judged.to_dict()
                    click.echo(json.dumps(out))
                if fin.status != "finished":
                    worst = 3
                    break
            if store.count(status="pending"):
                click.echo("Review the new samples with `tuitune review` (or in the app).")
            return worst
        except (SynthError, TeacherError) as e:
            fail(str(e))
        finally:
            await teacher.close()
            if judge_client is not None and judge_client is not teacher:
                await judge_client.close()
            if answerer:
                await answerer.close()
        return 1

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        click.echo("Cancelled; what was stored is kept. Run `tuitune synth` again to resume the round.", err=True)
        return 130


async def _batch(eng, runner, st, update, wait):
    """One batch round with its status on the progress line; None when a hosted batch is left running."""
    from tuitune.core.synth.batch import run_batch_round

    def on_status(job):
        counts = job.counts
        done = f" {counts.get('completed', 0)}/{counts.get('total', len(job.requests))}" if counts else ""
        update(f"round {eng.round.id if eng.round else '?'}: {job.kind} batch {job.id or ''} {job.status}{done}")

    fin = await run_batch_round(eng, runner, project=st.project, wait=wait, on_status=on_status)
    if fin is None:
        click.echo(f"The batch of round {eng.round.id} is still running; run `tuitune synth --batch hosted` again "
                   f"to check it and collect the samples (closing this terminal is fine).")
    return fin


def _print_teachers(store, round_id: int) -> None:
    """The round's counters per teacher (requests, failures, the samples each wrote)."""
    from tuitune.core.curation.round_stats import round_stats

    rs = next((r for r in round_stats(store) if r.id == round_id), None)
    for name, t in (rs.teachers if rs else {}).items():
        out = f"  taken out: {t['out']}" if t.get("out") else ""
        click.echo(f"  teacher {name}: stored {t.get('stored', 0)}  requests {t.get('requests', 0)}  responses "
                   f"{t.get('responses', 0)}  failed {t.get('failed', 0)}  rerouted {t.get('rerouted', 0)}{out}")


def _split(n: int, size: int | None) -> list[int]:
    if not size or size >= n:
        return [n]
    return [size] * (n // size) + ([n % size] if n % size else [])
