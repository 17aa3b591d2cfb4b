"""`tuitune export-model RUN --format gguf|hf`: the tuned model out, for Ollama / llama.cpp / LM Studio or the Hub."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tuitune.commands.common import fail, progress_bar, settings

QUANT_HELP = ("GGUF type: f16, bf16, q8_0 (default; written by llama.cpp's converter), f32, or a lower-bit "
              "k-quant such as q4_k_m, q5_k_m, q6_k (needs llama.cpp's quantizer: llama-cpp-python).")


@click.command(name="export-model")
@click.argument("run_id", metavar="RUN")
@click.option("--format", "fmt", type=click.Choice(["gguf", "hf"]), default="gguf", show_default=True,
              help="gguf: one GGUF file + an Ollama Modelfile; hf: a clean merged model folder with a model card.")
@click.option("--quant", default=None, metavar="TYPE", help=QUANT_HELP)
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Output folder (default: exports/models/RUN-QUANT/ for gguf, exports/models/RUN-hf/ for hf).")
@click.option("--force", is_flag=True, help="Replace an existing GGUF/Modelfile or hf folder.")
@click.option("--name", default=None, help="Model name in the `ollama create` line (default: the task's name).")
@click.option("--verify", "verify_n", type=click.IntRange(0, 100), default=3, show_default=True,
              help="gguf: greedy-answer this many of the run's prompts with the GGUF and the merged model and "
                   "compare (0: skip).")
@click.option("--max-new-tokens", type=click.IntRange(1, 4096), default=48, show_default=True,
              help="gguf: token budget of each verification answer.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.pass_context
def export_model(ctx, run_id, fmt, quant, output, force, name, verify_n, max_new_tokens, as_json):
    """Export run RUN's tuned model: a GGUF for Ollama / llama.cpp / LM Studio, or a Hugging Face folder.

    A run with an adapter but no merged/ folder is merged first. The GGUF is loaded back and its greedy answers
    compared with the merged model's."""
    import os

    # transformers' own tqdm bars (loading, de-quantizing) would break the progress bar below; tqdm reads this
    # when it is imported, which has not happened yet. The converter's subprocess gets its bar back (converter.py).
    os.environ.setdefault("TQDM_DISABLE", "1")
    from tuitune.core.export_model import ExportError
    from tuitune.core.export_model.export import export_gguf, export_hf, preflight_gguf, preflight_hf

    project = settings(ctx).project
    if output is not None:
        output = output.expanduser().resolve()
    try:  # the refusals first, without a progress bar
        if fmt == "gguf":
            quant = quant or "q8_0"
            preflight_gguf(project, run_id, quant=quant, output=output, force=force)
        elif quant is not None:
            raise ExportError("--quant applies to --format gguf only; an hf folder keeps the merged model's dtype")
        else:
            preflight_hf(project, run_id, output=output, force=force)
        with progress_bar(f"exporting {run_id}", total=1.0) as update:
            def progress(what: str, fraction: float) -> None:
                update(what, fraction)

            if fmt == "gguf":
                result = export_gguf(project, run_id, quant=quant, output=output, force=force, verify=verify_n,
                                     max_new_tokens=max_new_tokens, name=name, progress=progress)
            else:
                result = export_hf(project, run_id, output=output, force=force, progress=progress)
    except ExportError as e:
        fail(str(e), code=2)
    if as_json:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False))
        return
    if fmt == "hf":
        click.echo(f"wrote {result.folder} ({result.size_bytes / 2**20:.0f} MiB: {', '.join(result.files)})")
        return
    click.echo(f"wrote {result.gguf} ({result.size_bytes / 2**20:.0f} MiB, {result.quant})")
    click.echo(f"wrote {result.modelfile} (TEMPLATE from the {result.template or 'unknown'} chat template; "
               f"stops: {', '.join(result.stops) or 'none'})")
    if result.template_note:
        click.echo(f"note: no TEMPLATE in the Modelfile: {result.template_note}", err=True)
    v = result.verification
    if v:
        click.echo(f"verified on {v['prompts']} {v['source']}, {v['max_new_tokens']} new tokens each:")
        click.echo(f"  {v['summary']}")
        if v.get("llama_cpp"):
            click.echo(f"  {v['llama_cpp']['summary']}")
        if v["non_empty"] < v["prompts"]:
            click.echo(f"  warning: {v['prompts'] - v['non_empty']} GGUF answer(s) empty", err=True)
    if result.run_status != "done":
        click.echo(f"note: run {run_id} is {result.run_status}, not done; this is the model it left.", err=True)
    click.echo("Run it in Ollama:")
    click.echo(f"  {result.ollama_create}")
    click.echo(f"  ollama run {result.ollama_name}")
