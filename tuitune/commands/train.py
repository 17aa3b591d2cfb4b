"""Training sub-commands: `train`, `runs` (list, `watch`, `stop`), `merge`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from tuitune.commands.common import fail, settings

METHOD_CHOICES = ["lora", "qlora", "dora", "full", "dpo", "kto", "orpo", "pretrain"]


def _errors():
    from tuitune.core.models import ModelError
    from tuitune.core.training.config import ConfigError
    from tuitune.core.training.data import DataError
    from tuitune.core.training.jobs import JobError
    from tuitune.core.training.merge import MergeError

    return (ConfigError, DataError, JobError, ModelError, MergeError)


@click.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML training config (see `runs/<id>/config.yaml` of any run for every field).")
@click.option("--method", type=click.Choice(METHOD_CHOICES), help="Training method (default: lora).")
@click.option("--base", help="Base model: registered name or folder (default: settings' base model).")
@click.option("--epochs", type=float, help="Passes over the data (default: preset from dataset size).")
@click.option("--max-steps", type=int, help="Stop after N optimizer steps.")
@click.option("--data", "data_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Train on an exported file instead of the project's accepted samples.")
@click.option("--set", "sets", multiple=True, metavar="FIELD=VALUE",
              help="Override any config field, e.g. --set lora_r=8 --set batch_size=4 (repeatable).")
@click.option("--resume", "resume_id", metavar="ID", help="Continue run ID from its last checkpoint.")
@click.option("--foreground", is_flag=True, help="Stream progress and return when the run ends (exit 0 only "
                                                 "on success). The worker still runs as its own process.")
@click.pass_context
def train(ctx, config_file, method, base, epochs, max_steps, data_file, sets, resume_id, foreground):
    """Launch a training run in the background and print its id."""
    from tuitune.core.training import jobs
    from tuitune.core.training.config import TrainConfig

    project = settings(ctx).project
    try:
        if resume_id:
            run_id = jobs.resume(project, resume_id)
        else:
            cfg = TrainConfig.load(config_file) if config_file else TrainConfig(base=settings(ctx).base_model)
            overrides = dict(_parse_sets(sets))
            overrides.update(method=method, base=base, epochs=epochs, max_steps=max_steps,
                             data=str(data_file.resolve()) if data_file else None)
            cfg = cfg.updated(**overrides)
            run_id = jobs.launch(project, cfg)
    except _errors() as e:
        fail(str(e), code=2)
    click.echo(run_id)
    if foreground:
        info = _watch(project, run_id, plot=True)
        sys.exit(0 if info.status == "done" else 1)


def _parse_sets(sets) -> list[tuple[str, object]]:
    import yaml

    out = []
    for s in sets:
        if "=" not in s:
            fail(f"--set {s!r}: expected FIELD=VALUE", code=2)
        k, v = s.split("=", 1)
        out.append((k.strip(), yaml.safe_load(v)))
    return out


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run.")
@click.pass_context
def runs(ctx, as_json):
    """List training runs with their status (running/done/failed/interrupted/stopped)."""
    if ctx.invoked_subcommand is not None:
        return
    from tuitune.core.training.jobs import list_runs

    items = list_runs(settings(ctx).project)
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
        for line in (r.error, r.hint):
            if line:
                click.echo(f"{'':34} {line}")


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

    from tuitune.core.training.events import read_events
    from tuitune.core.training.jobs import run_dir, run_info

    d = run_dir(project, run_id)
    offset, losses = 0, []
    info = run_info(d)
    console = Console(stderr=True)

    def handle(events, prog, task) -> None:
        for ev in events:
            if ev.get("event") == "step":
                losses.append((ev["step"], ev.get("loss")))
                prog.update(task, total=ev.get("max_steps") or None, completed=ev["step"],
                            description=f"loss {ev.get('loss') or 0:.4f}  {ev.get('tokens_per_second') or 0:.0f} "
                                        f"tok/s  eta {ev.get('eta_seconds') or 0:.0f}s")
            elif (msg := _describe(ev)):
                prog.console.print(msg, markup=False, highlight=False)

    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                      TextColumn("step"), MofNCompleteColumn(), TimeElapsedColumn(),  # "step 3/10", "step 0/?"
                      console=console) as prog:
            task = prog.add_task(f"{run_id} starting", total=None)
            while True:
                events, offset = read_events(d, offset)
                handle(events, prog, task)
                info = run_info(d)
                if info.status != "running":
                    events, offset = read_events(d, offset)
                    handle(events, prog, task)
                    break
                time.sleep(poll)
    except KeyboardInterrupt:
        click.echo(f"\nStopped watching; the run goes on. `tuitune runs watch {run_id}` to follow it again.",
                   err=True)
    if plot and len([x for x in losses if x[1] is not None]) >= 2:
        _plot_losses(losses)
    click.echo(f"{run_id}: {info.status}" + (f" ({info.error})" if info.error else ""), err=True)
    return info


def _plot_losses(losses: list[tuple[int, float]]) -> None:
    import plotext as plt

    xs = [s for s, v in losses if v is not None]
    ys = [v for s, v in losses if v is not None]
    fig = plt.figure
    fig.clear()
    fig.plot_size(70, 15)
    fig.draw(fig.signal(xs, ys, marker="braille"))
    fig.title("training loss (x: step)")
    text = str(fig.build())
    click.echo(text if sys.stdout.isatty() else plt.uncolorize(text))
