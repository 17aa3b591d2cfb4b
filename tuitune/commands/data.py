"""Project and data sub-commands: init, task, import, export, stats, dedup."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tuitune.commands.common import fail, open_store, parse_size, settings
from tuitune.core.data.importing import IMPORT_AS
from tuitune.core.words import plural


@click.command()
@click.option("--name", help="Short name of the task.")
@click.option("--description", help="What the tuned model should do.")
@click.option("--system", "system_prompt", help="System prompt used in training and chat.")
@click.pass_context
def init(ctx, name, description, system_prompt):
    """Create a project in --project (default: current folder). Safe to run again."""
    project = settings(ctx).project
    store = open_store(ctx, create=True)
    for sub in ("runs", "exports"):
        (project / sub).mkdir(exist_ok=True)
    if any(v is not None for v in (name, description, system_prompt)):
        store.set_task(name=name, description=description, system_prompt=system_prompt)
    click.echo(f"Project ready in {project} ({store.path.name}, runs/, exports/).")


@click.command()
@click.option("--name")
@click.option("--description")
@click.option("--system", "system_prompt")
@click.option("--tag", "tags", multiple=True, help="Tag such as en-zh or medical (repeatable; replaces the list).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def task(ctx, name, description, system_prompt, tags, as_json):
    """Show the task, or set any of its fields."""
    store = open_store(ctx)
    t = store.set_task(name=name, description=description, system_prompt=system_prompt,
                       tags=list(tags) if tags else None)
    if as_json:
        click.echo(json.dumps(t.__dict__, ensure_ascii=False))
    else:
        for k, v in t.__dict__.items():
            click.echo(f"{k:14} {v}")


@click.command(name="import")
@click.argument("source", metavar="FILE")
@click.option("--format", "fmt", type=click.Choice(["auto", "alpaca", "sharegpt", "openai", "trl", "csv"]),
              default="auto", show_default=True,
              help="trl: prompt/completion and prompt/chosen/rejected. auto tells every format (and preference "
                   "pairs) from the record's fields.")
@click.option("--as", "as_", type=click.Choice(list(IMPORT_AS)), default="accepted", show_default=True,
              help="seeds: examples for synthesis; accepted: ready for training; pending: to review first.")
@click.option("--map", "columns", multiple=True, metavar="FIELD=COLUMN,...",
              help="Read fields from columns with other names, e.g. --map instruction=question,output=answer.")
@click.option("--skip-invalid", is_flag=True, help="Import the valid records and report the skipped ones.")
@click.option("--max-size", default="512M", show_default=True, metavar="SIZE",
              help="Refuse files larger than this (e.g. 800M, 2G): parsing takes several times the file size "
                   "in memory.")
@click.pass_context
def import_(ctx, source, fmt, as_, columns, skip_invalid, max_size):
    """Import FILE into the project: JSON, JSONL, CSV, Parquet, .json.gz/.jsonl.gz, a datasets save_to_disk
    folder, or hf://datasets/ORG/NAME[:SPLIT] from the Hugging Face cache. A file with errors imports nothing
    unless --skip-invalid."""
    from tuitune.core.data.formats import FormatError
    from tuitune.core.data.importing import import_file

    max_bytes = parse_size(max_size)
    store = open_store(ctx, create=True)
    try:
        rep = import_file(store, source, fmt=fmt, as_=as_, skip_invalid=skip_invalid, max_bytes=max_bytes,
                          columns=list(columns))
    except FormatError as e:
        fail(str(e) + IMPORT_REMEDIES.get(e.remedy or "", ""), code=2)
    parsed, n, already = rep.parsed, rep.stored, rep.already_in_project
    kind = f"{parsed.container}, {parsed.format}" if parsed.container else parsed.format
    click.echo(f"Imported {plural(n, 'record')} from {source} ({kind}) as {as_}.")
    if rep.pairs:
        click.echo(f"{rep.pairs} of them are preference pairs (chosen + rejected answer): DPO training and "
                   f"`tuitune export --format dpo` use them; SFT trains on the chosen answers.")
    if parsed.duplicates or already:
        click.echo(f"Duplicates kept: {parsed.duplicates} repeat earlier records of this file, {already} were "
                   f"already in the project. Remove them with `tuitune dedup`.")
    if parsed.skipped_records:
        click.echo(f"Skipped {parsed.skipped_records} invalid records:", err=True)
        for issue in parsed.issues[:20]:
            click.echo(f"  {issue}", err=True)


# What gets past a FormatError, in this face's words (core names the read_file argument).
IMPORT_REMEDIES = {"skip_invalid": "\nTo import only the valid records: --skip-invalid.",
                   "max_bytes": "\nTo raise the limit: --max-size SIZE (e.g. --max-size 2G).",
                   "columns": "\nTo read fields from columns with other names: --map FIELD=COLUMN,... "
                              "(e.g. --map instruction=question,output=answer)."}


def _test_size(ctx, param, value):
    from tuitune.core.data.groups import parse_test_size

    try:
        return parse_test_size(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


@click.command()
@click.option("--format", "fmt", type=click.Choice(["alpaca", "sharegpt", "openai", "dpo"]), default="alpaca",
              show_default=True,
              help="alpaca/sharegpt: LLaMA-Factory; openai: TRL (and LLaMA-Factory); dpo: LLaMA-Factory pairs "
                   "plus TRL prompt/chosen/rejected files. All load with datasets.load_dataset('json').")
@click.option("--output", "-o", type=click.Path(path_type=Path), required=True,
              help="Output file (.json/.jsonl; without a suffix the format's is added); with --test-size, a folder "
                   "(train/test files + dataset_info.json).")
@click.option("--test-size", default="0", show_default=True, callback=_test_size,
              help="Held-out fraction in [0, 1) (0.1 = 10%) or a whole count of records (20) for a test split. "
                   "Duplicate and near-duplicate prompts stay on one side.")
@click.option("--seed", type=int, default=42, show_default=True, help="Seed of the train/test split.")
@click.option("--no-seeds", is_flag=True, help="Leave seed examples out (accepted samples only).")
@click.option("--name", default=None,
              help="Dataset name in dataset_info.json [default: tuitune for alpaca, tuitune_FORMAT otherwise].")
@click.pass_context
def export(ctx, fmt, output, test_size, seed, no_seeds, name):
    """Export seeds + accepted samples (written atomically) and LLaMA-Factory dataset_info.json entries.

    Records without their own system prompt get the task's. A symlink at the output path is followed (its
    target is replaced); a device node or FIFO there is refused."""
    from tuitune.core.data.export import ExportError
    from tuitune.core.data.export import export as do_export

    store = open_store(ctx)
    try:
        res = do_export(store, fmt, output, test_size=test_size, seed=seed, include_seeds=not no_seeds, name=name)
    except ExportError as e:
        fail(str(e), code=2)
    for line in res.summary():
        click.echo(line)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object (for scripts).")
@click.pass_context
def stats(ctx, as_json):
    """Counts of samples by status and by origin."""
    st = open_store(ctx).stats()
    if as_json:
        click.echo(json.dumps(st))
        return
    click.echo(f"samples: {st['total']}   rounds: {st['rounds']}   exact duplicates: {st['duplicates']}")
    click.echo("by status: " + ", ".join(f"{k} {v}" for k, v in sorted(st["by_status"].items())) or "-")
    click.echo("by origin: " + ", ".join(f"{k} {v}" for k, v in sorted(st["by_origin"].items())) or "-")


@click.command()
@click.pass_context
def dedup(ctx):
    """Remove exact duplicates (everything trained on equal after normalising: system prompt, history,
    instruction, input, output, a pair's rejected answer), keeping the oldest of each."""
    n = open_store(ctx).remove_duplicates()
    click.echo(f"Removed {plural(n, 'duplicate')}.")
