"""A Hugging Face cache laid out as huggingface_hub itself writes it, for tests that must resolve Hub IDs offline.

    <cache>/models--ORG--NAME/
        blobs/<sha256 of the content>        large (LFS) files: *.safetensors, *.bin
        blobs/<git blob sha1 of the content> the other files (what the Hub gives as their etag)
        snapshots/<40-hex commit>/<file> -> ../../blobs/<hash>   (relative symlinks)
        refs/<branch or tag>                 the commit hash, no newline

`use_cache(monkeypatch, cache)` points the environment (HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE=1, inherited by
subprocesses: the CLI, the training worker) and this process's already imported huggingface_hub constants at it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pth")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def add_snapshot(cache: Path, repo_id: str, files: dict[str, bytes | Path], commit: str,
                 refs: tuple[str, ...] = ("main",)) -> Path:
    """Add revision `commit` of model `repo_id` holding `files` (name -> bytes, or a file to copy) to `cache`;
    point `refs` at it. Returns the snapshot folder."""
    assert len(commit) == 40 and all(c in "0123456789abcdef" for c in commit), commit
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        blob = repo / "blobs" / _blob_id(name, content)
        if not blob.exists():
            if isinstance(content, Path):
                shutil.copyfile(content, blob)  # a copy, not a link: nothing may reach the original
            else:
                blob.write_bytes(content)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot


_HASHES: dict[tuple[str, str, int, int], str] = {}  # (name, file, size, mtime) -> blob id: hash a model once


def _blob_id(name: str, content: bytes | Path) -> str:
    lfs = name.endswith(LFS_SUFFIXES)
    if not isinstance(content, Path):
        return hashlib.sha256(content).hexdigest() if lfs else git_blob_sha1(content)
    st = content.stat()
    key = (name, str(content.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        if lfs:
            with open(content, "rb") as f:
                _HASHES[key] = hashlib.file_digest(f, "sha256").hexdigest()
        else:
            _HASHES[key] = git_blob_sha1(content.read_bytes())
    return _HASHES[key]


def model_files(folder: Path) -> dict[str, Path]:
    """The files of a model folder (e.g. the embedded model's), as add_snapshot takes them."""
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_file()}


def use_cache(monkeypatch, cache: Path, *, offline: bool = True) -> None:
    from huggingface_hub import constants

    home = cache.parent
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)


def tiny_model(note: str = "") -> dict[str, bytes]:
    """The files of a model folder as the resolver checks them (config, weights, tokenizer, chat template)."""
    return {"config.json": json.dumps({"model_type": "llama", "note": note}).encode(),
            "model.safetensors": b"weights " + note.encode(),
            "tokenizer.json": b"{}",
            "tokenizer_config.json": json.dumps({"chat_template": "{{ messages }}"}).encode()}
