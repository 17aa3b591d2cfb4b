"""Entry point `tuitune`: no sub-command opens the TUI; every step also has a headless sub-command.

Sub-commands are imported lazily (only the one being run), so `tuitune --help` and the TUI start fast.
No heavy import (torch, transformers, vllm) may happen at module level anywhere on this path.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import click

# name -> "module:attribute" of a click command; each module is imported only when its command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("tuitune.commands.data:init", "Create a project (tuitune.db, runs/, exports/) in --project."),
    "task": ("tuitune.commands.data:task", "Show or set the task: name, description, system prompt, tags."),
    "import": ("tuitune.commands.data:import_", "Import Alpaca/ShareGPT/OpenAI JSONL/CSV into the project."),
    "export": ("tuitune.commands.data:export", "Export kept samples as Alpaca/ShareGPT/OpenAI/DPO."),
    "stats": ("tuitune.commands.data:stats", "Counts by status and origin."),
    "dedup": ("tuitune.commands.data:dedup", "Remove exact duplicate samples (keeps the oldest)."),
    "models": ("tuitune.commands.models:models", "List base models; prepare the embedded one; add local ones."),
    "doctor": ("tuitune.commands.doctor:doctor", "Check Python, torch/CUDA, vLLM, the embedded model, disk."),
    "synth": ("tuitune.commands.synth:synth", "Generate a round of new samples with the teacher LLM."),
    "review": ("tuitune.commands.review:review", "Accept / reject / edit / rate pending samples (headless)."),
    "judge": ("tuitune.commands.judge:judge", "Score samples with the judge; its agreement with you; bulk actions."),
    "lessons": ("tuitune.commands.review:lessons", "Show the lessons learned from review for the next round."),
    "train": ("tuitune.commands.train:train", "Launch a background training run (LoRA/QLoRA/DoRA/full/DPO/...)."),
    "runs": ("tuitune.commands.train:runs", "List training runs; watch or stop one."),
    "merge": ("tuitune.commands.train:merge", "Merge a run's adapter into a full model folder."),
    "export-model": ("tuitune.commands.export_model:export_model",
                     "Export a run's model as GGUF (+ Ollama Modelfile) or a clean Hugging Face folder."),
    "serve": ("tuitune.commands.serve:serve", "Serve base and tuned models with vLLM (OpenAI-compatible)."),
    "chat": ("tuitune.commands.serve:chat", "Chat with a served model in the terminal."),
    "eval": ("tuitune.commands.serve:eval_", "Evaluate a run on the held-out split (BLEU, chrF, ROUGE-L)."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name][0].split(":")
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Exception as e:  # a damaged/locked project database anywhere: say what it is, exit 2
            from tuitune.commands.common import database_failure

            message = database_failure(ctx, e)
            if message is None:
                raise
            click.echo(f"error: {message}", err=True)
            ctx.exit(2)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help from the table above, so `--help` imports no command module.
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in sorted(COMMANDS)])


def quiet_deepspeed() -> None:
    """Without an NVIDIA GPU, tell DeepSpeed its accelerator is the CPU: otherwise the first library call that
    looks it up (transformers' save_pretrained does) prints DeepSpeed's "Setting accelerator to CPU" warning on
    stdout, into output other programs read (`tuitune merge` prints the merged path there). With a GPU,
    DeepSpeed's own detection picks CUDA silently."""
    import os
    import shutil

    if not shutil.which("nvidia-smi"):
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


@click.group(cls=LazyGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--project", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Project folder (default: the current directory).")
@click.version_option(package_name="tuitune")
@click.pass_context
def main(ctx: click.Context, project: Path | None) -> None:
    """tuitune: from a handful of examples to a fine-tuned small model, in the terminal.

    With no command, opens the app on the project in the current folder (or --project).
    """
    from pydantic import ValidationError

    from tuitune.settings import load_settings

    quiet_deepspeed()
    try:
        ctx.obj = load_settings(project=project.resolve() if project else None)
    except ValidationError as e:  # a TUITUNE_* variable with a bad value: name it, say what it takes, exit 2
        for err in e.errors():
            name = "TUITUNE_" + "_".join(map(str, err["loc"])).upper()
            click.echo(f"error: {name}={err.get('input')!r}: {err['msg']}. Fix or unset {name}.", err=True)
        ctx.exit(2)
    if ctx.invoked_subcommand is None:
        from tuitune.tui.app import make_app

        app = make_app(ctx.obj)
        app.run()
        if app.return_code:  # the app ended on an error (Textual printed it): never exit 0 then
            ctx.exit(app.return_code)


if __name__ == "__main__":
    main()
