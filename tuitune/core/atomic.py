"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one.

- The new file gets the mode of the file it replaces; a new file gets the default mode for the process's umask
  (0644 under umask 022), as `open()` would give it.
- A symlink at the path is followed: its target is replaced atomically (the link stays a link).
- A path that holds something other than a regular file (a device node, a FIFO, a socket, a folder) is refused
  with `NotARegularFile` before anything is written.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path


class NotARegularFile(OSError):
    """The output path exists and is not a regular file (nor a symlink to one)."""


def target_of(path: Path | str) -> Path:
    """The file a write to `path` replaces: `path` itself, or where its symlinks lead. Raises NotARegularFile
    for a device node, FIFO, socket or folder there."""
    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return target
    except OSError as e:  # a symlink loop, a path through a file, no permission
        raise NotARegularFile(f"{path}: {e.strerror}; choose another output path") from None
    if not stat.S_ISREG(st.st_mode):
        kind = _kind(st.st_mode)
        via = f" (the symlink {path} points to it)" if target != path else ""
        raise NotARegularFile(f"{target} is {kind}{via}, not a regular file; refusing to replace it. "
                              f"Choose another output path.")
    return target


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device node"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def write_bytes(path: Path | str, data: bytes) -> None:
    target = target_of(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = None
    # O_EXCL on a fresh random name, created with 0666 so the kernel applies the umask (mkstemp would give 0600)
    for _ in range(100):
        tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 collisions of 32 random bits
        raise FileExistsError(f"could not create a temporary file next to {target}")
    try:
        with os.fdopen(fd, "wb") as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path | str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path | str, data) -> None:
    write_text(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def write_jsonl(path: Path | str, rows) -> None:
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
