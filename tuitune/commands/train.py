"""Training sub-commands: `train`, `runs` (list, `watch`, `stop`, `parity`), `merge`."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

import click

from tuitune.commands.common import fail, progress_bar, settings


def _errors():
    from tuitune.core.models import ModelError
    from tuitune.core.training.config import ConfigError
    from tuitune.core.training.data import DataError
    from tuitune.core.training.jobs import JobError
    from tuitune.core.training.merge import MergeError

    return (ConfigError, DataError, JobError, ModelError, MergeError)


def config_options(f):
    """One click option per TrainConfig field (tuitune.core.training.options): same name, help and choices as
    the config file and the TUI form. An option not given leaves the field to --config / the presets."""
    from tuitune.core.training.options import option_specs

    for spec in reversed(option_specs()):
        default = "" if spec.optional or spec.default in (None, "", []) else f" [default: {spec.default}]"
        if spec.name == "base":  # the settings' base model, known only when the command runs
            default = f" [default: $TUITUNE_BASE_MODEL, else {spec.default}]"
        help_text = spec.help + default
        if spec.kind == "bool":
            f = click.option(f"{spec.flag}/--no-{spec.flag[2:]}", spec.name, default=None, help=help_text)(f)
        elif spec.kind == "choice":
            f = click.option(spec.flag, spec.name, type=click.Choice(spec.choices), help=help_text)(f)
        elif spec.kind == "int" and spec.choices:  # a number or a keyword (gpus: 2 or all): parsed by core
            f = click.option(spec.flag, spec.name, metavar="N|" + "|".join(spec.choices), help=help_text)(f)
        elif spec.kind in ("int", "float"):
            f = click.option(spec.flag, spec.name, type={"int": int, "float": float}[spec.kind],
                             help=help_text)(f)
        else:  # str, list (comma-separated)
            f = click.option(spec.flag, spec.name, metavar="TEXT" if spec.kind == "str" else "A,B,...",
                             help=help_text)(f)
    return f


def config_from(base, values: dict, sets: tuple[str, ...]):
    """`base` (a TrainConfig) with the given options and --set FIELD=VALUE overrides applied and checked."""
    from tuitune.core.training.config import ConfigError
    from tuitune.core.training.options import parse, spec

    changes = {}
    for name, value in values.items():
        if value is None:
            continue
        if spec(name).kind == "list" or isinstance(value, str) and spec(name).kind == "int":
            value = parse(name, value)
        elif name == "data" and value:
            value = str(Path(value).expanduser().resolve())
        changes[name] = value
    for s in sets:
        if "=" not in s:
            raise ConfigError(f"--set {s!r}: expected FIELD=VALUE")
        k, v = s.split("=", 1)
        changes[k.strip()] = parse(k.strip(), v)
    return base.updated(**changes)


@click.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML training config (see `runs/<id>/config.yaml` of any run for every field).")
@click.option("--set", "sets", multiple=True, metavar="FIELD=VALUE",
              help="Override any config field, e.g. --set lora_r=8 (repeatable; the same as --lora-r 8).")
@click.option("--resume", "resume_id", metavar="ID", help="Continue run ID from its last checkpoint.")
@click.option("--from-scratch", is_flag=True, help="With --resume: restart from step 0 when the run has no "
                                                   "checkpoint left.")
@click.option("--dry-run", is_flag=True, help="Check the data and settings, print the resolved config and the "
                                              "worker's command line; create and start nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: one JSON object.")
@click.option("--foreground", is_flag=True, help="Stream progress and return when the run ends (exit 0 only "
                                                 "on success). The worker still runs as its own process.")
@config_options
@click.pass_context
def train(ctx, config_file, sets, resume_id, from_scratch, dry_run, as_json, foreground, **values):
    """Launch a training run in the background and print its id.

    Every setting is an option below (or a field of --config FILE, or --set FIELD=VALUE); unset ones are
    chosen by the presets from your data and hardware."""
    from tuitune.core.training import jobs
    from tuitune.core.training.config import TrainConfig

    s = settings(ctx)
    try:
        if resume_id:
            run_id = jobs.resume(s.project, resume_id, from_scratch=from_scratch, home=s.home)
        else:
            base = TrainConfig.load(config_file) if config_file else TrainConfig(base=s.base_model)
            cfg = config_from(base, values, sets)
            if dry_run:
                _dry_run(s, cfg, as_json)
                return
            with _download_progress() as progress:
                run_id = jobs.launch(s, cfg, progress=progress)
    except jobs.NoCheckpoint as e:
        fail(f"{e} (`tuitune train --resume {resume_id} --from-scratch`)", code=2)
    except _errors() as e:
        fail(str(e), code=2)
    click.echo(run_id)
    _other_nodes(s.project, run_id)
    if foreground:
        info = _watch(s.project, run_id, plot=True)
        sys.exit(0 if info.status == "done" else 1)


def _other_nodes(project, run_id: str) -> None:
    """A run over several nodes started node 0 here: say what each other node runs (also in launch.json)."""
    from tuitune.core.training.jobs import find

    run = find(project, run_id)
    if not run.launch_file.is_file():
        return
    launch = json.loads(run.launch_file.read_text(encoding="utf-8"))
    others = launch["node_commands"][1:]
    if not others:
        return
    click.echo(f"node 0 of {launch['nodes']} started here ({launch['world_size']} ranks, rendezvous "
               f"{launch['rendezvous']}). On each other node, with the run folder at the same path "
               f"({run.path}), run:", err=True)
    for node in others:
        click.echo(f"  node {node['node_rank']}: {node['line']}", err=True)


@contextlib.contextmanager
def _download_progress():
    """A (stage, fraction) callback that shows a progress bar on stderr from its first call on: a base model
    that is downloaded (a Hub ID not in the cache yet) gets one, a cached one prints nothing."""
    with contextlib.ExitStack() as stack:
        bar = []

        def progress(stage: str, frac: float) -> None:
            if not bar:
                bar.append(stack.enter_context(progress_bar(stage, total=1.0)))
            bar[0](stage, frac)

        yield progress


def _dry_run(s, cfg, as_json: bool) -> None:
    from tuitune.core.training import jobs
    from tuitune.core.training.config import TrainConfig
    from tuitune.core.training.gpu import quant_words

    plan = jobs.dry_run(s, cfg)
    if as_json:
        click.echo(json.dumps(plan, ensure_ascii=False))
        return
    click.echo(plan["config_yaml"], nl=False)
    if len(plan["node_commands"]) > 1:
        for node in plan["node_commands"]:
            click.echo(f"# node {node['node_rank']} of {plan['nodes']}: {node['line']}")
        click.echo(f"# world size {plan['world_size']}: the run folder must be at the same path on every node")
    else:
        click.echo(f"# launcher: {' '.join(plan['launcher'])}")
    if plan.get("gpu_gib_per_rank"):
        click.echo(f"# GPU memory per rank: at least {plan['gpu_gib_per_rank']} GiB ({plan['distributed']})")
    click.echo(f"# runs on: {plan['runs_on']}; {plan['train_records']} of {plan['records']} records train, "
               f"about {plan['steps']} optimizer steps")
    click.echo(f"# effective batch: {plan['effective_batch']} records per optimizer step")
    if quant := quant_words(TrainConfig.model_validate(plan["config"])):  # qlora: which base it trains on
        click.echo(f"# quantised: {quant}; quant: nf4 (4-bit) or int8 (8-bit)")
    for field, why in plan["reasons"].items():  # the values the presets filled in, and why
        click.echo(f"# {field}: {why}")


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run.")
@click.pass_context
def runs(ctx, as_json):
    """List training runs with their status (running/done/failed/interrupted/stopped)."""
    if ctx.invoked_subcommand is not None:
        return
    from tuitune.core.evaluation.parity import event_lines
    from tuitune.core.training.jobs import list_runs

    items = list_runs(settings(ctx).project)
    for r in items:  # what to type, for the interrupted ones (core says "it can be resumed")
        if r.status == "interrupted" and not r.hint:
            r.hint = f"resume it: tuitune train --resume {r.id}"
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in items], ensure_ascii=False))
        return
    if not items:
        click.echo("No runs yet. Start one with `tuitune train`.")
        return
    click.echo(f"{'ID':34} {'STATUS':12} {'METHOD':9} {'STEP':>11} {'LOSS':>8}  BASE")
    for r in items:
        step = f"{r.step}/{r.max_steps if r.max_steps and r.max_steps > 0 else '?'}"
        loss = f"{r.loss:.4f}" if isinstance(r.loss, (int, float)) else "-"
        click.echo(f"{r.id:34} {r.status:12} {r.method:9} {step:>11} {loss:>8}  {r.base}")
        for line in (r.phase, r.error, r.hint,
                     (r.verdict or {}).get("summary") or (r.verdict or {}).get("verdict"),
                     *_general_lines(r.verdict),
                     *(words for level, words in event_lines(r.parity) if level != "note")):
            if line:
                click.echo(f"{'':34} {line}")
        if r.bad_lines:
            click.echo(f"{'':34} ({r.bad_lines} unreadable line(s) in events.jsonl skipped)")


@runs.command()
@click.argument("run_id")
@click.option("--no-plot", is_flag=True, help="Skip the loss curve at the end.")
@click.pass_context
def watch(ctx, run_id, no_plot):
    """Follow run ID: a progress bar while it runs, then the loss curve. Ctrl-C stops watching, not the run."""
    from tuitune.core.training.jobs import JobError, run_dir

    project = settings(ctx).project
    try:
        run_dir(project, run_id)
    except JobError as e:
        fail(str(e), code=2)
    info = _watch(project, run_id, plot=not no_plot)
    sys.exit(0 if info.status == "done" else 1)


@runs.command(name="stop")
@click.argument("run_id")
@click.option("--wait", "wait_s", type=float, default=600, show_default=True,
              help="Seconds to wait for the checkpoint and the `stopped` event (0: don't wait).")
@click.pass_context
def stop_cmd(ctx, run_id, wait_s):
    """Stop run ID cleanly: it saves a checkpoint, then exits. Continue later with `train --resume ID`."""
    from tuitune.core.training import jobs

    try:
        info = jobs.stop(settings(ctx).project, run_id, timeout=wait_s)
    except _errors() as e:
        fail(str(e), code=2)
    click.echo(f"{run_id}: {info.status} at step {info.step}")


@runs.command(name="parity")
@click.argument("run_id")
@click.option("--engines", default="transformers,vllm,gguf", show_default=True,
              help="Engines to compare, separated by commas: transformers, vllm, gguf (the exported GGUF). One "
                   "that cannot run here is left out with the reason.")
@click.option("-n", "--prompts", "n", type=click.IntRange(1, 100), default=8, show_default=True,
              help="Held-out prompts to answer.")
@click.option("--max-new-tokens", type=click.IntRange(1), default=None,
              help="Token budget per answer (default: the run's check_max_new_tokens, else min(max_length, 256)).")
@click.option("--gguf", "gguf", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="The GGUF to compare (default: the newest one `tuitune export-model` wrote for the run).")
@click.option("--json", "as_json", is_flag=True, help="Print the parity event as JSON.")
@click.pass_context
def parity(ctx, run_id, engines, n, max_new_tokens, gguf, as_json):
    """Answer N of run ID's held-out prompts greedily with each engine on its merged model and compare them: the
    share of identical answers per engine pair, where the first one diverges, and the likely cause of a large
    disagreement (template, EOS, dtype). Recorded as a `parity` event (the card, `runs --json`) and in
    runs/ID/parity.json (every answer)."""
    from tuitune.core.evaluation.parity import ParityError, event_lines, parity_check
    from tuitune.core.training.jobs import JobError, run_dir

    s = settings(ctx)
    try:
        d = run_dir(s.project, run_id)
        out = parity_check(d, engines=[e.strip() for e in engines.split(",") if e.strip()], n=n, settings=s,
                           max_new_tokens=max_new_tokens, model_dirs={"gguf": gguf} if gguf else None,
                           progress=lambda msg: click.echo(msg, err=True))
    except (JobError, ParityError) as e:
        fail(str(e), code=2)
    if as_json:
        click.echo(json.dumps(out, ensure_ascii=False))
        return
    for _level, words in event_lines(out):
        click.echo(words)
    click.echo(f"answers: {d / 'parity.json'}", err=True)


@click.command()
@click.argument("run_id")
@click.pass_context
def merge(ctx, run_id):
    """Merge run ID's adapter into runs/ID/merged/ (a full model folder for vLLM and transformers)."""
    from tuitune.core.training import jobs
    from tuitune.core.training.merge import merge_run

    try:
        d = jobs.run_dir(settings(ctx).project, run_id)
        out = merge_run(d)
    except _errors() as e:
        fail(str(e), code=2)
    click.echo(str(out))


# ---- watching ---------------------------------------------------------------------------------------

def _general_lines(verdict: dict | None) -> list[str]:
    """The forgetting check's line beside the verdict, and its warning."""
    general = (verdict or {}).get("general") or {}
    return [x for x in (general.get("text"), f"warning: {general['warning']}" if general.get("warning") else "") if x]


def _describe(ev: dict) -> str | None:
    kind = ev.get("event")
    if kind == "step":
        return None
    if kind == "check":
        return f"check {ev.get('check')}: {'passed' if ev.get('passed') else 'FAILED'} - {ev.get('details', '')}"
    if kind == "failed":
        return f"failed: {ev.get('error')}\n{ev.get('hint', '')}"
    if kind == "checkpoint":
        return f"checkpoint at step {ev.get('step')}"
    if kind == "eval":
        return "eval: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                    for k, v in ev.items() if k not in ("event", "time"))
    if kind == "verdict":
        return "\n".join([f"verdict: {ev.get('summary') or ev.get('verdict')}", *_general_lines(ev)])
    extras = {k: v for k, v in ev.items() if k not in ("event", "time") and v is not None}
    return f"{kind}: " + ", ".join(f"{k}={v}" for k, v in extras.items())


def _watch(project: Path, run_id: str, *, plot: bool, poll: float = 1.0):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from tuitune.core.training.jobs import find, run_info

    run = find(project, run_id)
    follower = run.follower()
    info = run_info(run.path)
    console = Console(stderr=True)

    def handle(events, prog, task) -> None:
        st = follower.state
        for ev in events:
            if ev["event"] == "step":
                tps, eta = _num(ev.get("tokens_per_second")), _num(ev.get("eta_seconds"))
                mem = f"  GPU {ev['gpu_peak_gib']:.1f}/{_num(ev.get('gpu_reserved_gib')):.1f} GiB" \
                    if ev.get("gpu_peak_gib") is not None else ""  # peak allocated / reserved
                prog.update(task, total=st.max_steps, completed=ev["step"],
                            description=f"loss {_num(ev.get('loss')):.4f}  {tps:.0f} tok/s  eta {eta:.0f}s{mem}")
            elif ev["event"] == "phase":  # trained: merging, checking, the held-out verdict (with counts)
                prog.update(task, description=str(ev.get("message") or ev.get("phase")))
            elif (msg := _describe(ev)):
                prog.console.print(msg, markup=False, highlight=False)

    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                      TextColumn("step"), MofNCompleteColumn(), TimeElapsedColumn(),  # "step 3/10", "step 0/?"
                      console=console) as prog:
            task = prog.add_task(f"{run_id} starting", total=None)
            while True:
                handle(follower.poll(), prog, task)
                info = run_info(run.path)
                if info.status != "running":
                    handle(follower.poll(final=True), prog, task)
                    break
                time.sleep(poll)
    except KeyboardInterrupt:
        click.echo(f"\nStopped watching; the run goes on. `tuitune runs watch {run_id}` to follow it again.",
                   err=True)
    if plot and len(follower.state.losses) >= 2:
        _plot_losses(follower.state.losses)
    click.echo(f"{run_id}: {info.status}" + (f" ({info.error})" if info.error else ""), err=True)
    return info


def _num(v) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0


def _plot_losses(losses: list[tuple[int, float]]) -> None:
    import plotext as plt

    xs = [s for s, _ in losses]
    ys = [v for _, v in losses]
    fig = plt.figure
    fig.clear()
    fig.plot_size(70, 15)
    fig.draw(fig.signal(xs, ys, marker="braille"))
    fig.title("training loss (x: step)")
    text = str(fig.build())
    click.echo(text if sys.stdout.isatty() else plt.uncolorize(text))
