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
        lic = f"  [{i.license}]" if i.license else ""
        click.echo(f"{i.name:28} {i.kind:9} {state:10} {where}{lic}" + (f"  ({i.note})" if i.note else ""))
    if cached:
        click.echo("\nIn the Hugging Face cache (use the ID as --base):")
        for m in cached:
            refs = f" [{', '.join(m.refs)}]" if m.refs else ""
            chat = "chat template" if m.chat_template else "no chat template (method pretrain only)"
            click.echo(f"  {m.id}@{m.revision[:12]}{refs}  {_size(m.size)}  {chat}")


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


@models.command()
@click.argument("name", required=False, default="smollm2-135m-instruct", metavar="[NAME]")
@click.option("--force", is_flag=True, help="Convert again even if already prepared.")
@click.option("--accept-license", is_flag=True,
              help="For gemma3-270m: accept the Gemma Terms of Use without being asked (read them first).")
@click.pass_context
def prepare(ctx, name, force, accept_license):
    """Convert a bundled base model into a transformers folder, once: the embedded smollm2-135m-instruct
    (default; Apache-2.0) or the opt-in multilingual gemma3-270m (Gemma Terms of Use: shown, and asked for a yes)."""
    from tuitune.core.models import EMBEDDED_NAME, OPT_IN, ModelError, prepare_embedded

    if name not in (EMBEDDED_NAME, *OPT_IN):
        fail(f"No bundled model named {name!r}; the bundled ones are {', '.join([EMBEDDED_NAME, *OPT_IN])}. "
             f"Use `tuitune models add NAME FOLDER_OR_ID` for other models.", code=2)
    s = settings(ctx)
    if name == EMBEDDED_NAME:
        with progress_bar(f"preparing {EMBEDDED_NAME}") as update:
            try:
                path = prepare_embedded(s.models_dir, lambda stage, frac: update(stage, frac), force=force)
            except ModelError as e:
                fail(str(e))
        click.echo(f"Embedded model ready: {path}")
        return
    _prepare_gemma(s, force, accept_license)


def _prepare_gemma(s, force: bool, accept_license: bool) -> None:
    import sys

    from tuitune.core import gemma
    from tuitune.core.models import ModelError, is_ready

    if not accept_license and not (force is False and is_ready(s.models_dir / gemma.NAME)):
        click.echo(gemma.license_notice(), err=True)
        if not sys.stdin.isatty():
            fail(f"Not accepted: nothing was downloaded. Read the terms, then run `tuitune models prepare "
                 f"{gemma.NAME} --accept-license`.", code=2)
        if not click.confirm("Do you accept the Gemma Terms of Use?", default=False, err=True):
            fail("Not accepted: nothing was downloaded or written.", code=2)
        accept_license = True
    with progress_bar(f"preparing {gemma.NAME}") as update:
        try:
            path = gemma.prepare(s.models_dir, lambda stage, frac: update(stage, frac),
                                 accept_license=accept_license or is_ready(s.models_dir / gemma.NAME), force=force)
        except ModelError as e:
            fail(str(e), code=2 if isinstance(e, gemma.LicenseNotAccepted) else 1)
    click.echo(f"{gemma.NAME} ready: {path} ({gemma.LICENSE}: see GEMMA_TERMS.html and {gemma.MODIFIED_NOTICE} "
               f"there). Train on it with `tuitune train --base {gemma.NAME}`.")


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
