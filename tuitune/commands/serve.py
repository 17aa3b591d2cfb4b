"""`tuitune serve`, `tuitune chat`, `tuitune eval`: serve models with vLLM, chat with them, evaluate a run."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import click

from tuitune.commands.common import fail, open_store, settings

# ---- resolving MODEL | RUN_ID ------------------------------------------------------------------------

def resolve_spec(ctx: click.Context, arg: str, *, merged: bool = False):
    from tuitune.core.serving.plan import resolve_spec as core_resolve
    from tuitune.core.serving.vllm import ServingError

    try:
        return core_resolve(settings(ctx), arg, merged=merged)
    except ServingError as e:
        fail(str(e))


def _default_specs(ctx, models: tuple[str, ...], merged: bool):
    s = settings(ctx)
    return [resolve_spec(ctx, m, merged=merged) for m in (models or (s.base_model,))]


def _pool(ctx):
    """The engine pool for this command (the same pool type the TUI uses); `with` it to stop what it started."""
    from tuitune.core.serving.pool import EnginePool

    return EnginePool(settings(ctx), settings(ctx).project / "logs")


def _echo_notes(pool) -> None:
    for note in pool.notes:
        click.echo(f"note: {note}", err=True)
    pool.notes.clear()


class _StopServing(BaseException):
    """Raised by the SIGINT/SIGTERM handler of `tuitune serve` to unwind into the cleanup."""


# ---- serve -----------------------------------------------------------------------------------------

@click.command()
@click.argument("models", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Once ready, print one JSON line (base_url, api_key, models, pid).")
@click.option("--port", type=int, help="Preferred port (another free one is used if it is taken).")
@click.option("--merged", is_flag=True, help="Serve runs as their merged model instead of base + LoRA adapter.")
@click.option("--timeout", type=float, help="Seconds to wait for readiness (default TUITUNE_VLLM_STARTUP_TIMEOUT).")
@click.option("--dry-run", is_flag=True, help="Print the planned vLLM command lines and environment (the API key "
                                              "redacted; with --json as JSON) and start nothing.")
@click.pass_context
def serve(ctx, models, as_json, port, merged, timeout, dry_run):
    """Serve MODEL names, model folders or RUN_IDs with vLLM until Ctrl-C / SIGTERM.

    Runs with a LoRA adapter share one server with their base model (--enable-lora). With no argument the
    base model is served. Prints the base URL, API key and served model names once ready."""
    from tuitune.core.serving.errors import ServingError, VLLMUnavailable

    if dry_run:
        _dry_run(ctx, models, merged, port, as_json)
        return
    specs = _default_specs(ctx, models, merged)

    def on_signal(signum, frame):
        # First SIGINT/SIGTERM: unwind (also out of a start in progress) to the `finally` that stops vLLM;
        # further signals are ignored so they cannot interrupt that cleanup.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        raise _StopServing(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    pool = _pool(ctx)
    try:
        click.echo(f"starting vLLM for {', '.join(sp.name for sp in specs)} (about a minute on CPU) ...", err=True)
        try:
            group = pool.serve(specs, port=port, timeout=timeout)
        except VLLMUnavailable as e:
            fail(f"{e}\n`tuitune chat MODEL` works without vLLM (it uses the transformers engine in-process).", 2)
        except ServingError as e:
            fail(str(e))
        _echo_notes(pool)
        servers = [{"base_url": s.base_url, "api_key": s.api_key, "models": s.model_names, "vllm_pid": s.pid,
                    "log": str(s.log_path)} for s in group.servers]
        first = group.servers[0]
        if as_json:
            click.echo(json.dumps({"base_url": first.base_url, "api_key": first.api_key, "models": group.model_names,
                                   "pid": os.getpid(), "engine": "vllm", "servers": servers}))
        else:
            for s in servers:
                click.echo(f"engine   vllm\nbase_url {s['base_url']}\napi_key  {s['api_key']}\n"
                           f"models   {', '.join(s['models'])}\nlog      {s['log']}")
            click.echo(f"pid      {os.getpid()}  (Ctrl-C or SIGTERM stops the servers)")
        sys.stdout.flush()
        while True:
            time.sleep(1.0)
            dead = [s for s in group.servers if not s.alive()]
            if dead:
                from tuitune.core.serving.vllm import tail

                fail(f"vLLM for {dead[0].name} stopped unexpectedly. Log {dead[0].log_path}:\n{tail(dead[0].log_path)}")
    except _StopServing:
        pass
    finally:
        pool.stop_all()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("stopped", err=True)


def _dry_run(ctx, models, merged, port, as_json) -> None:
    """Plan without starting. A folder holding only a config.json (say, a 70B model's) plans as the real model."""
    from tuitune.core.hardware import HardwareError
    from tuitune.core.serving.errors import ServingError
    from tuitune.core.serving.plan import ModelSpec, dry_run

    s = settings(ctx)
    specs = [ModelSpec(Path(m).name, Path(m)) if (Path(m) / "config.json").is_file() else
             resolve_spec(ctx, m, merged=merged) for m in (models or (s.base_model,))]
    try:
        planned = dry_run(specs, s.project / "logs", s, port=port)
    except (ServingError, HardwareError) as e:
        fail(f"cannot serve {', '.join(sp.name for sp in specs)}: {e}", 2)
    if as_json:
        click.echo(json.dumps(planned))
        return
    for srv in planned["servers"]:
        click.echo(f"models  {', '.join(srv['models'])}")
        click.echo("env     " + " ".join(f"{k}={v}" for k, v in srv["env"].items()))
        click.echo("command " + " ".join(srv["command"]))


# ---- chat ----------------------------------------------------------------------------------------

def _backends_for(ctx, pool, models, *, url, api_key, engine, merged, timeout):
    """Backends for `models`: at --url, or from the pool (vLLM, or transformers only where vLLM cannot run)."""
    from tuitune.core.serving.backends import OpenAIBackend
    from tuitune.core.serving.vllm import Endpoint

    if url:
        if not models:
            fail("with --url, name the served model(s): tuitune chat --url URL MODEL", 2)
        return [OpenAIBackend(Endpoint(url, api_key or os.environ.get("OPENAI_API_KEY", "none"), m, "remote"))
                for m in models]
    specs = _default_specs(ctx, models, merged)
    return _started(pool, [sp.name for sp in specs], engine,
                    lambda: pool.backends(specs, engine=engine, timeout=timeout))


def _started(pool, names: list[str], engine: str, start):
    """Backends from `start()`, saying what starts and how it went (the pool's notes) on stderr."""
    from tuitune.core.serving.errors import ChatError, ServingError

    if engine != "transformers":
        click.echo(f"starting vLLM for {', '.join(names)} (about a minute on CPU) ...", err=True)
    try:
        backends = start()
    except (ServingError, ChatError) as e:
        fail(str(e))
    if pool.note:
        click.echo(pool.note, err=True)
    _echo_notes(pool)
    return backends


def _url_key(url: str | None, api_key: str | None, api_key_env: str | None, api_key_file: Path | None) -> str | None:
    """The key for --url from at most one of --api-key (warned: visible in `ps`), --api-key-env, --api-key-file."""
    given = [n for n, v in (("--api-key", api_key), ("--api-key-env", api_key_env), ("--api-key-file", api_key_file))
             if v is not None]
    if len(given) > 1:
        fail(f"give the key one way only, not {' and '.join(given)}", 2)
    if given and not url:
        fail(f"{given[0]} is the key for --url (a server started elsewhere); without --url tuitune starts its own "
             f"server with a generated key", 2)
    if api_key is not None:
        click.echo("warning: --api-key puts the key on the command line, where every user of this machine can read "
                   "it (`ps`); use --api-key-env VAR or --api-key-file PATH instead", err=True)
        return api_key
    if api_key_env is not None:
        key = os.environ.get(api_key_env, "")
        if not key:
            fail(f"--api-key-env {api_key_env}: the environment variable {api_key_env} is not set or empty; "
                 f"export {api_key_env}=... and try again", 2)
        return key
    if api_key_file is not None:
        try:
            lines = api_key_file.read_text(encoding="utf-8").strip().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            fail(f"--api-key-file {api_key_file}: cannot read it ({e.__class__.__name__}: {e})", 2)
        if not lines or not lines[0].strip():
            fail(f"--api-key-file {api_key_file}: the file is empty; put the key on its first line", 2)
        return lines[0].strip()
    return None


@click.command()
@click.argument("models", nargs=-1)
@click.option("--url", help="Use an already running OpenAI-compatible server (e.g. from `tuitune serve`).")
@click.option("--api-key", help="API key for --url. Visible to every user in `ps`: prefer --api-key-env or "
              "--api-key-file (default: $OPENAI_API_KEY).")
@click.option("--api-key-env", metavar="VAR", help="Name of the environment variable that holds the key for --url.")
@click.option("--api-key-file", type=click.Path(dir_okay=False, path_type=Path),
              help="File whose first line is the key for --url (e.g. mode 0600).")
@click.option("--engine", type=click.Choice(["auto", "vllm", "transformers"]), default="auto", show_default=True,
              help="auto: vLLM, or transformers only where vLLM cannot run.")
@click.option("--system", "system_prompt", help="System prompt (default: the task's).")
@click.option("--temperature", type=float, default=0.7, show_default=True)
@click.option("--max-tokens", type=int, default=512, show_default=True)
@click.option("--prompt", "one_prompt", help="Ask one question, print the answer(s) and exit.")
@click.option("--merged", is_flag=True, help="Use runs' merged models instead of base + LoRA adapter.")
@click.option("--timeout", type=float)
@click.pass_context
def chat(ctx, models, url, api_key, api_key_env, api_key_file, engine, system_prompt, temperature, max_tokens,
         one_prompt, merged, timeout):
    """Chat with MODEL / RUN_ID in the terminal (several: side by side).

    Commands: /regen  /save [corrected answer]  /seed [corrected answer]  /system TEXT  /clear  /restart  /quit"""
    from tuitune.core.serving.chat import GenParams

    key = _url_key(url, api_key, api_key_env, api_key_file)
    params = GenParams(temperature=temperature, max_tokens=max_tokens)
    system = system_prompt
    if system is None:
        from tuitune.core.data.store import DB_NAME

        system = ""
        if (settings(ctx).project / DB_NAME).exists():
            store = open_store(ctx)
            system = store.get_task().system_prompt
            store.close()
    with _pool(ctx) as pool:
        backends = _backends_for(ctx, pool, models, url=url, api_key=key, engine=engine, merged=merged,
                                 timeout=timeout)
        rc = 0
        try:
            click.echo(f"engine: {backends[0].engine}; models: {', '.join(b.name for b in backends)}", err=True)
            rc = asyncio.run(_chat_loop(ctx, backends, system, params, one_prompt)) or 0
        except KeyboardInterrupt:
            click.echo()
    if rc:
        sys.exit(rc)


async def _chat_loop(ctx, backends, system, params, one_prompt) -> int:
    from tuitune.core.serving.chat import ChatError, ChatSession, EngineDied, compare_collect
    from tuitune.core.serving.errors import ServingError

    sessions = [ChatSession(b, system=system, params=params) for b in backends]

    async def ask(prompt: str, regen: bool = False) -> None:
        if len(sessions) == 1:
            s = sessions[0]
            stream = s.regenerate() if regen else s.send(prompt)
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGINT, s.stop)
            try:
                async for delta in stream:
                    click.echo(delta, nl=False)
                click.echo()
            finally:
                loop.remove_signal_handler(signal.SIGINT)
            return
        kw = {"system": system, "params": params, "history": sessions[0].history}
        live = sys.stdout.isatty()  # live columns, one per model; piped: one line per model at the end
        if live:
            from tuitune.commands.side_by_side import stream_side_by_side

            answers = await stream_side_by_side(backends, prompt, **kw)
        else:
            answers = await compare_collect(backends, prompt, **kw)
        for s in sessions:
            s.history.append((prompt, answers[s.backend.name]))
            if not live:
                click.echo(click.style(f"[{s.backend.name}] ", bold=True) + answers[s.backend.name])

    async def guarded(prompt: str, regen: bool = False) -> bool:
        try:
            await ask(prompt, regen)
            return True
        except EngineDied as e:
            click.echo(f"\nerror: {e}\ntype /restart to restart the server, then ask again.", err=True)
        except ChatError as e:
            click.echo(f"\nerror: {e}", err=True)
        return False

    if one_prompt is not None:  # one question: the exit code says whether it was answered
        return 0 if await guarded(one_prompt) else 1
    while True:
        try:
            line = await asyncio.to_thread(input, "> ")
        except (EOFError, KeyboardInterrupt):
            click.echo()
            return 0
        line = line.strip()
        if not line:
            continue
        if line in ("/quit", "/exit"):
            return 0
        if line == "/regen":
            await guarded("", regen=True)
        elif line == "/clear":
            for s in sessions:
                s.clear()
        elif line.startswith("/system"):
            for s in sessions:
                s.system = line[len("/system"):].strip()
        elif line == "/restart":
            for b in backends:
                click.echo(f"restarting {b.name} ...", err=True)
                try:
                    await b.restart()
                except (ChatError, ServingError) as e:
                    click.echo(f"error: {e}", err=True)
        elif line.startswith(("/save", "/seed")):
            _save(ctx, sessions[0], line, as_seed=line.startswith("/seed"))
        else:
            await guarded(line)


def _save(ctx, session, line: str, *, as_seed: bool) -> None:
    from tuitune.core.serving.chat import ChatError, save_exchange

    if not session.history:
        click.echo("nothing to save yet", err=True)
        return
    prompt, answer = session.history[-1]
    corrected = line[5:].strip() or None
    store = open_store(ctx)
    try:
        s = save_exchange(store, prompt, answer, corrected, as_seed=as_seed, system=session.system,
                          history=session.history[:-1])
        click.echo(f"saved as {'seed' if as_seed else 'sample'} #{s.id} ({s.status})", err=True)
    except ChatError as e:
        click.echo(f"error: {e}", err=True)
    finally:
        store.close()


# ---- eval ----------------------------------------------------------------------------------------

@click.command(name="eval")
@click.argument("run_id")
@click.option("--no-base", is_flag=True, help="Evaluate only the tuned model, not the base beside it.")
@click.option("--data", "data_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Evaluate on this chat JSONL ({'messages': [...]}) instead of the run's held-out split.")
@click.option("--limit", type=int, help="Use at most N examples.")
@click.option("--max-tokens", type=int, default=256, show_default=True)
@click.option("--judge", is_flag=True, help="Also grade answers 1-5 with the teacher (prompts/judge.md).")
@click.option("--merged", is_flag=True, help="Serve the run's merged model instead of base + adapter.")
@click.option("--engine", type=click.Choice(["auto", "vllm", "transformers"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--timeout", type=float)
@click.pass_context
def eval_(ctx, run_id, no_base, data_file, limit, max_tokens, judge, merged, engine, as_json, timeout):
    """Evaluate RUN_ID on its held-out split: base vs base + few-shot (k training records as examples) vs tuned,
    greedy; BLEU, chrF, ROUGE-L, exact-match / contains for short answers, the same on a sample of training
    records, and a verdict in words with a bootstrap confidence interval.

    The report is saved as runs/RUN_ID/eval/report.json and report.md."""
    from tuitune.core.evaluation.evaluate import (
        EvalError,
        evaluate,
        held_out_items,
        items_from_records,
        save_report,
    )
    from tuitune.core.serving.chat import GenParams

    s = settings(ctx)
    run_dir = s.project / "runs" / run_id
    if not run_dir.is_dir():
        fail(f"no run {run_id} in {s.project / 'runs'} (see `tuitune runs`)")
    try:
        if data_file:
            from tuitune.core.training.data import read_records

            items = items_from_records(read_records(data_file))
        else:
            items = held_out_items(run_dir)
    except EvalError as e:
        fail(str(e))
    items = items[:limit] if limit else items
    resolve_spec(ctx, run_id, merged=merged)  # fails early with a clear message if the run has no model yet
    task = ""
    from tuitune.core.data.store import DB_NAME

    if (s.project / DB_NAME).exists():
        store = open_store(ctx)
        task = store.get_task().description
        store.close()
    pool = _pool(ctx)
    try:
        from tuitune.core.serving.pool import chat_targets

        # the pool's one policy (chat and the TUI use it too): the run, then the base it was trained from
        backends = _started(pool, [run_id] if no_base else [run_id, "its base model"], engine,
                            lambda: chat_targets(pool, run_id, with_base=not no_base, engine=engine,
                                                 timeout=timeout, merged=merged))[::-1]
        judge_backend = _judge_backend(s, backends) if judge else None
        contenders, sample = (backends, []) if no_base else _three_way(run_dir, items, backends, max_tokens)
        report = asyncio.run(evaluate(items, contenders, run_id=run_id, judge_backend=judge_backend, task=task,
                                      params=GenParams(temperature=0.0, max_tokens=max_tokens, seed=0),
                                      progress=lambda msg: click.echo(msg + " ...", err=True), project=s.project,
                                      train_items=sample))
    except (EvalError, Exception) as e:  # noqa: BLE001 - shown with what to do
        fail(f"evaluation failed: {e}")
    finally:
        pool.stop_all()
    jpath, mpath = save_report(report, run_dir)
    if as_json:
        click.echo(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        click.echo(report.to_markdown())
        click.echo(f"\nsaved {jpath} and {mpath}", err=True)


def _three_way(run_dir: Path, items, backends, max_tokens: int):
    """[base, base + few-shot, tuned] and a sample of training items, from the run's training records."""
    from tuitune.core.evaluation.evaluate import run_split, three_way

    train, _, cfg = run_split(run_dir)
    return three_way(train, items, backends[0], backends[1], seed=cfg.seed, answer_tokens=max_tokens)


def _judge_backend(s, backends):
    from tuitune.core.evaluation.judge import teacher_judge

    judge = teacher_judge(s)
    if judge is not None:
        return judge
    click.echo("no teacher endpoint set (TUITUNE_TEACHER_BASE_URL): judging with the base model, whose grades "
               "mean little for a 135M model", err=True)
    return backends[0]
