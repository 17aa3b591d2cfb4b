"""Export a run's model: `export_gguf` (GGUF + Ollama Modelfile, verified by loading it back) and `export_hf` (a
clean merged folder with a model card).

Everything that can be refused is checked before any work: the run exists and is not training, it has a model
(merged/, or an adapter that is merged first as `tuitune merge` does), the quant is known and can be made here,
and the output does not exist (unless `force`). Files are written under temporary names in the output folder
(`.NAME.PID.partial`) and renamed at the end, so a killed export leaves nothing that looks complete; leftovers of
dead exports are removed by the next one.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tuitune.core.export_model import ExportError
from tuitune.core.training.merge import copy_license_files

Progress = Callable[[str, float], None]  # (what is being done, overall fraction done 0..1)
EXPORTS = "exports"
GENERIC_PROMPTS = ["Hello! Who are you?", "Write one sentence about the sea.", "What is 12 + 30?"]
HF_FILES = ("config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",
            "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
            "chat_template.jinja", "chat_template.json", "tokenizer.model", "vocab.json", "merges.txt")


class OutputExists(ExportError):
    """The output is already there and replacing it was not asked for."""


class RunBusy(ExportError):
    """The run is still training."""


@dataclass
class GgufExport:
    run_id: str
    quant: str
    gguf: str
    modelfile: str
    size_bytes: int
    ollama_name: str
    ollama_create: str
    template: str  # the chat family the Modelfile's TEMPLATE was derived from (chatml, llama3, gemma), or ""
    template_note: str  # why the Modelfile has no TEMPLATE ("" when it has one)
    stops: list[str]
    system: str
    steps: list[dict] = field(default_factory=list)  # what ran: {"step", "argv"/"path", "seconds"}
    verification: dict | None = None
    run_status: str = "done"
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class HfExport:
    run_id: str
    folder: str
    files: list[str]
    size_bytes: int
    run_status: str = "done"
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


# ---- checks shared by both formats -------------------------------------------------------------------

def check_run(project: Path | str, run_id: str):
    """The run's RunDir and RunInfo, when it exists, is not training and has a model (merged or an adapter)."""
    from tuitune.core.training.jobs import run_info
    from tuitune.core.training.run_dir import RunDir, RunNotFound

    try:
        run = RunDir.find(project, run_id)
    except RunNotFound as e:
        raise ExportError(str(e)) from None
    info = run_info(run.path)
    if info.status == "running":
        at = f" (step {info.step}/{info.max_steps})" if info.max_steps and info.max_steps > 0 else ""
        raise RunBusy(f"run {run_id} is still training{at}; export it when it is done: `tuitune runs watch "
                      f"{run_id}` follows it, `tuitune runs stop {run_id}` stops it.")
    if not run.has_merged() and not run.has_adapter():
        raise ExportError(f"run {run_id} has no model to export: neither {run.merged} nor an adapter in "
                          f"{run.adapter} (status: {info.status}{'; ' + info.error if info.error else ''}). "
                          f"Resume it (`tuitune train --resume {run_id}`) or export another run.")
    if not run.has_merged():  # merged first: that needs the base model
        from tuitune.core.training.config import ConfigError, TrainConfig

        try:
            base = TrainConfig.load(run.config).base_path
        except ConfigError as e:
            raise ExportError(f"run {run_id}'s adapter cannot be merged: {e}") from None
        if not base or not Path(base).is_dir():
            raise ExportError(f"run {run_id} has an adapter but no merged model, and its base model folder "
                              f"{base or '(none recorded)'} is gone, so the adapter cannot be merged. Put the base "
                              f"model back there, or export a run that has runs/<id>/merged/.")
    return run, info


def merged_model(run, progress: Progress | None = None) -> Path:
    """runs/<id>/merged, merged from the adapter first when it is not there (as `tuitune merge` does)."""
    if run.has_merged():
        return run.merged
    from tuitune.core.training.merge import MergeError, merge_run

    if progress:
        progress("merging the adapter into merged/", 0.0)
    try:
        return merge_run(run.path)
    except MergeError as e:
        raise ExportError(f"cannot merge run {run.id}'s adapter: {e}") from None


def default_output(project: Path | str, run_id: str, kind: str) -> Path:
    return Path(project) / EXPORTS / "models" / f"{run_id}-{kind}"


def _partial(folder: Path, name: str, tag: str = "") -> Path:
    return folder / f".{name}.{os.getpid()}{tag}.partial"


def clean_stale_partials(folder: Path, name: str) -> list[Path]:
    """Remove `.NAME.PID*.partial` files and folders left by exports whose process is gone."""
    import psutil

    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.glob(f".{name}.*.partial"):
        pid = p.name[len(name) + 2:].split(".")[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _refuse_existing(path: Path, force: bool) -> None:
    if path.is_dir() and not path.is_symlink():
        raise OutputExists(f"{path} is a folder; choose another --output")
    if path.exists() and not force:
        raise OutputExists(f"{path} already exists; ask to replace it (--force) or choose another --output")


# ---- what the Modelfile and the card say ---------------------------------------------------------------

def task_info(project: Path | str) -> tuple[str, str]:
    """(task name, system prompt) of the project, or ("", "") without a readable project database."""
    import sqlite3

    from tuitune.core.data.store import Store, StoreError

    try:
        with Store.open(project, create=False) as store:
            task = store.get_task()
            return task.name or "", task.system_prompt or ""
    except (StoreError, OSError, sqlite3.Error):  # the export does not need the database
        return "", ""


def _records(run) -> tuple[list[dict], list[dict]]:
    """(training, held-out) records of the run, split as the worker split them ([] when unreadable)."""
    from tuitune.core.training.config import ConfigError, TrainConfig
    from tuitune.core.training.data import DataError, read_records, split_holdout

    try:
        cfg = TrainConfig.load(run.config)
        records = read_records(cfg.data or run.data)
        return split_holdout(records, cfg.holdout or 0, cfg.seed)
    except (ConfigError, DataError, ValueError, OSError):
        return [], []


def _prompt_of(record: dict) -> list[dict] | None:
    msgs = record.get("prompt") if "prompt" in record else record.get("messages")
    if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) for m in msgs):
        return None
    if msgs[-1].get("role") == "assistant":
        msgs = msgs[:-1]
    msgs = [{"role": m.get("role"), "content": str(m.get("content", ""))} for m in msgs]
    return msgs if msgs and msgs[-1]["role"] == "user" else None


def verification_prompts(run, n: int, system: str = "") -> tuple[list[list[dict]], str]:
    """Up to n conversations to check the GGUF on: the run's held-out records, then its training records, else
    generic prompts (with the task's system prompt); and where they came from."""
    train, held = _records(run)
    out, source = [], "held-out records"
    for r in held + train:
        if len(out) >= n:
            break
        p = _prompt_of(r)
        if p:
            out.append(p)
    if out and len(out) > sum(1 for r in held if _prompt_of(r)):
        source = "held-out and training records" if any(_prompt_of(r) for r in held) else "training records"
    if not out:
        sys_msg = [{"role": "system", "content": system}] if system else []
        out = [sys_msg + [{"role": "user", "content": p}] for p in GENERIC_PROMPTS[:n]]
        source = "generic prompts (the run has no chat records)"
    return out, source


def run_system_prompt(run) -> str:
    """The system prompt every record of the run shares, or ''."""
    train, held = _records(run)
    seen = set()
    for r in train + held:
        msgs = _prompt_of(r) or []
        seen.add(msgs[0]["content"] if msgs and msgs[0]["role"] == "system" else "")
    return next(iter(seen)) if len(seen) == 1 else ""


def chat_format_of(model_dir: Path):
    """(ChatFormat or None, why it is None, the EOS tokens as text) for the merged model's tokenizer."""
    from transformers import AutoTokenizer

    from tuitune.core.export_model.chat_format import UnknownChatFormat, derive

    tok = AutoTokenizer.from_pretrained(model_dir)
    eos = _eos_tokens(model_dir, tok)
    try:
        return derive(tok.chat_template, bos_token=tok.bos_token or "", eos_tokens=eos), "", eos
    except UnknownChatFormat as e:
        return None, str(e), eos


def _eos_tokens(model_dir: Path, tok) -> list[str]:
    """The tokenizer's EOS and every EOS id of generation_config.json, as text."""
    import json

    ids = []
    gen = Path(model_dir) / "generation_config.json"
    if gen.is_file():
        try:
            e = json.loads(gen.read_text(encoding="utf-8")).get("eos_token_id")
            ids = e if isinstance(e, list) else [e] if e is not None else []
        except ValueError:
            ids = []
    out = [tok.eos_token] if tok.eos_token else []
    for i in ids:
        if isinstance(i, int):
            t = tok.convert_ids_to_tokens(i)
            if t and t not in out:
                out.append(t)
    return out


# ---- GGUF --------------------------------------------------------------------------------------------

def preflight_gguf(project: Path | str, run_id: str, *, quant: str = "q8_0", output: Path | str | None = None,
                   force: bool = False):
    """Every refusal of export_gguf, before any work: (run, info, quant, folder, gguf path, Modelfile path)."""
    from tuitune.core.export_model import converter, quantize

    quant = quantize.check_quant(quant)
    quantize.require_quantizer(quant)
    run, info = check_run(project, run_id)
    out_dir = Path(output) if output else default_output(project, run_id, quant)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputExists(f"{out_dir} is a file, not a folder; choose another --output")
    gguf_path = out_dir / f"{run.id}-{quant}.gguf"
    modelfile_path = out_dir / "Modelfile"
    _refuse_existing(gguf_path, force)
    _refuse_existing(modelfile_path, force)
    converter.script()  # installed? (before a merge, which takes a while)
    return run, info, quant, out_dir, gguf_path, modelfile_path


def export_gguf(project: Path | str, run_id: str, *, quant: str = "q8_0", output: Path | str | None = None,
                force: bool = False, verify: int = 3, max_new_tokens: int = 48, name: str | None = None,
                progress: Progress | None = None) -> GgufExport:
    """Write OUTPUT/<run>-<quant>.gguf and OUTPUT/Modelfile (default OUTPUT: exports/models/<run>-<quant>/),
    verified by loading the GGUF back and answering `verify` prompts greedily (0: no verification)."""
    from tuitune.core import atomic
    from tuitune.core.export_model import converter, quantize
    from tuitune.core.export_model.modelfile import Modelfile, create_command, ollama_name

    t0 = time.monotonic()
    run, info, quant, out_dir, gguf_path, modelfile_path = preflight_gguf(project, run_id, quant=quant,
                                                                          output=output, force=force)
    lower = quantize.needs_quantizer(quant)
    stages = {"merge": 0.0 if run.has_merged() else 0.15, "convert": 0.35, "quantize": 0.15 if lower else 0.0,
              "verify": 0.5 if verify > 0 else 0.0}
    total = sum(stages.values())
    done = [0.0]

    def report(stage: str, what: str, frac: float) -> None:
        if progress:
            progress(what, min(1.0, (done[0] + stages[stage] * max(0.0, min(frac, 1.0))) / total))

    def finish(stage: str) -> None:
        done[0] += stages[stage]

    steps: list[dict] = []
    t = time.monotonic()
    merged = merged_model(run, (lambda what, f: report("merge", what, f)) if progress else None)
    if stages["merge"]:
        steps.append({"step": "merge", "path": str(merged), "seconds": round(time.monotonic() - t, 1)})
    finish("merge")
    out_dir.mkdir(parents=True, exist_ok=True)
    clean_stale_partials(out_dir, gguf_path.name)
    part = _partial(out_dir, gguf_path.name)
    source = _partial(out_dir, gguf_path.name, ".source") if lower else part
    try:
        t = time.monotonic()
        outtype = _source_type(merged) if lower else quant
        report("convert", f"converting to GGUF ({outtype})", 0.0)
        argv = converter.convert(merged, source, outtype,
                                 progress=lambda f: report("convert", f"converting to GGUF ({outtype})", f))
        steps.append({"step": "convert", "argv": argv, "seconds": round(time.monotonic() - t, 1)})
        finish("convert")
        if lower:
            t = time.monotonic()
            report("quantize", f"quantizing to {quant} (llama.cpp)", 0.0)
            argv = quantize.quantize(source, part, quant,
                                     progress=lambda f: report("quantize", f"quantizing to {quant} (llama.cpp)", f))
            source.unlink(missing_ok=True)
            steps.append({"step": "quantize", "argv": argv, "seconds": round(time.monotonic() - t, 1)})
            finish("quantize")
        fmt, why, eos = chat_format_of(merged)
        task_name, system = task_info(project)
        system = system or run_system_prompt(run)
        verification = None
        if verify > 0:
            t = time.monotonic()
            verification = verify_gguf(part, merged, run, verify, max_new_tokens, system=system, fmt=fmt,
                                       progress=lambda what, f: report("verify", what, f))
            verification["seconds"] = round(time.monotonic() - t, 1)
            finish("verify")
        os.replace(part, gguf_path)
    finally:
        part.unlink(missing_ok=True)
        source.unlink(missing_ok=True)
    mf = Modelfile(gguf_path.name, fmt, system=system, note=why, stops=eos)
    atomic.write_text(modelfile_path, mf.text())
    copy_license_files(merged, out_dir)  # beside the GGUF: the base's license and notices
    model_name = ollama_name(name or task_name or f"tuitune-{run_id}")
    if progress:
        progress("done", 1.0)
    return GgufExport(run_id=run.id, quant=quant, gguf=str(gguf_path), modelfile=str(modelfile_path),
                      size_bytes=gguf_path.stat().st_size, ollama_name=model_name,
                      ollama_create=create_command(model_name, modelfile_path),
                      template=fmt.family if fmt else "", template_note=why, stops=mf.all_stops(), system=system, steps=steps,
                      verification=verification, run_status=info.status,
                      seconds=round(time.monotonic() - t0, 1))


def _source_type(model_dir: Path) -> str:
    """The 16-bit type to quantize from: bf16 for a bf16 model, else f16."""
    import json

    try:
        cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "f16"
    dtype = cfg.get("dtype") or cfg.get("torch_dtype") or ""
    return "bf16" if str(dtype) == "bfloat16" else "f16"


def verify_gguf(gguf_path: Path, merged: Path, run, n: int, max_new_tokens: int, *, system: str = "",
                fmt=None, progress: Progress | None = None) -> dict:
    """Greedy answers of the GGUF (transformers' GGUF reader; also llama.cpp when llama-cpp-python is installed)
    against the merged folder's (transformers) on n of the run's prompts."""
    from tuitune.core.export_model import verify as v

    threads = share_cpu()
    prompts, source = verification_prompts(run, n, system)
    k = len(prompts)
    engines = 2 + (1 if v.llama_cpp_available() and fmt is not None else 0)
    part = [0]

    def answered(label: str):
        def on(i: int) -> None:
            if progress:
                progress(f"checking: {label} {i}/{k}", (part[0] + i / k) / engines)
        return on

    def next_part() -> None:
        part[0] += 1

    if progress:
        progress("checking: loading the merged model", 0.0)
    reference = v.folder_greedy_answers(merged, prompts, max_new_tokens, on_answer=answered("merged model"))
    next_part()
    if progress:
        progress("checking: loading the GGUF back", part[0] / engines)
    answers = v.gguf_greedy_answers(gguf_path, prompts, max_new_tokens, on_answer=answered("GGUF"))
    next_part()
    cmp = v.compare_answers(reference, answers)
    out = {"prompts": k, "source": source, "max_new_tokens": max_new_tokens, "cpu_threads": threads,
           "reader": "transformers GGUF loader (de-quantized weights)", **cmp,
           "non_empty": sum(bool(a.strip()) for a in answers), "summary": v.describe(cmp, "GGUF in transformers"),
           "answers": [{"prompt": p[-1]["content"][:200], "merged": r, "gguf": a}
                       for p, r, a in zip(prompts, reference, answers)]}
    if engines == 3:
        from tuitune.core.export_model.chat_format import render_messages

        texts = [render_messages(fmt, p) for p in prompts]
        if progress:
            progress("checking: llama.cpp", part[0] / engines)
        try:
            lc = v.llama_cpp_greedy_answers(gguf_path, texts, max_new_tokens)
        except v.GgufUnreadable as e:  # llama-cpp-python is optional here; say what happened, keep the file
            out["llama_cpp"] = {"error": str(e), "summary": f"GGUF in llama.cpp: not checked ({e})"}
        else:
            lcmp = v.compare_answers(reference, lc)
            out["llama_cpp"] = {**lcmp, "non_empty": sum(bool(a.strip()) for a in lc), "answers": lc,
                                "summary": v.describe(lcmp, "GGUF in llama.cpp (on the Modelfile's TEMPLATE)")}
    return out


def share_cpu() -> int | None:
    """On a CPU, torch's threads cut to what is free: this process's share beside the app's other heavy processes
    (vLLM servers, training workers: tuitune.core.resources, as training does) and the cores the load average
    leaves idle. None (unchanged) on a GPU or when all of torch's threads are free. Measured on 2 cores beside
    other busy processes: 48 greedy tokens of the embedded model took 42 s with torch's default 2 threads (they
    spin against the others), 3 s with 1 thread."""
    import torch

    if torch.cuda.is_available():
        return None
    from tuitune.core import hardware, resources

    have = torch.get_num_threads()
    budget = resources.thread_budget(hardware.detect(), resources.running())
    want = have if budget.alone else budget.threads
    try:
        idle = round((os.cpu_count() or have) - os.getloadavg()[0])
    except OSError:  # no load average on this system
        idle = want
    want = max(1, min(want, idle))
    if want >= have:
        return None
    torch.set_num_threads(want)
    return want


# ---- Hugging Face folder -------------------------------------------------------------------------------

def preflight_hf(project: Path | str, run_id: str, *, output: Path | str | None = None, force: bool = False):
    """Every refusal of export_hf, before any work: (run, info, output folder)."""
    run, info = check_run(project, run_id)
    out = Path(output) if output else default_output(project, run_id, "hf")
    if out.exists() or out.is_symlink():
        if not force:
            raise OutputExists(f"{out} already exists; ask to replace it (--force) or choose another --output")
        if not out.is_dir() or out.is_symlink():
            raise OutputExists(f"{out} is not a folder; refusing to replace it. Choose another --output")
    return run, info, out


def export_hf(project: Path | str, run_id: str, *, output: Path | str | None = None, force: bool = False,
              progress: Progress | None = None) -> HfExport:
    """A clean copy of the merged model (weights, config, tokenizer, chat template, generation config) with a
    model card README.md, at OUTPUT (default exports/models/<run>-hf/)."""
    from tuitune.core import atomic
    from tuitune.core.export_model.model_card import card, run_facts

    t0 = time.monotonic()
    run, info, out = preflight_hf(project, run_id, output=output, force=force)
    merged = merged_model(run, progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_partials(out.parent, out.name)
    tmp = _partial(out.parent, out.name)
    old = _partial(out.parent, out.name, ".old")
    shards = sorted(p.name for p in merged.glob("model-*-of-*.safetensors"))
    names = [n for n in HF_FILES if (merged / n).is_file()] + shards
    if not any(n.endswith(".safetensors") for n in names):
        raise ExportError(f"{merged} holds no safetensors weights; re-merge the run (`tuitune merge {run_id}`)")
    try:
        tmp.mkdir()
        total = sum((merged / n).stat().st_size for n in names) or 1
        copied = 0
        for n in names:
            if progress:
                progress(f"copying {n}", copied / total)
            shutil.copy2(merged / n, tmp / n)
            copied += (merged / n).stat().st_size
        if not (tmp / "chat_template.jinja").exists() and run.chat_template.is_file() \
                and "chat_template" not in (tmp / "tokenizer_config.json").read_text(encoding="utf-8"):
            shutil.copy2(run.chat_template, tmp / "chat_template.jinja")
        if not (tmp / "generation_config.json").exists():
            _write_generation_config(tmp)
        copy_license_files(merged, tmp)  # the base's terms travel with what is made from it (Gemma's ask for it)
        task_name, system = task_info(project)
        atomic.write_text(tmp / "README.md", card(run_facts(run.path), system_prompt=system or run_system_prompt(run),
                                                  name=task_name))
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    if progress:
        progress("done", 1.0)
    files = sorted(p.name for p in out.iterdir())
    return HfExport(run_id=run.id, folder=str(out), files=files,
                    size_bytes=sum((out / f).stat().st_size for f in files), run_status=info.status,
                    seconds=round(time.monotonic() - t0, 1))


def _write_generation_config(folder: Path) -> None:
    from transformers import AutoConfig, GenerationConfig

    GenerationConfig.from_model_config(AutoConfig.from_pretrained(folder)).save_pretrained(folder)
