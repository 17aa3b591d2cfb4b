"""The guard process between a tuitune process and the vLLM server it starts: no orphans, ever.

`python -m tuitune.core.serving.guard PARENT_PID -- CMD...` starts CMD in the process group the guard leads and
watches its own parent; when the parent dies, even by SIGKILL, the guard terminates the whole group (vLLM's API
server and its engine-core process). The parent is polled instead of using prctl(PR_SET_PDEATHSIG) in the app,
because that signal fires when the *thread* that forked exits, so a server started from a TUI worker thread
would die with the worker. `kill_group()` is the parent's side: SIGKILL what is left and wait until it is gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of the process group `pgid`."""
    import psutil

    out = []
    for p in psutil.process_iter(["pid", "status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(p.pid) == pgid:
                out.append(p.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return out


def kill_group(pgid: int) -> None:
    """SIGKILL whatever is left of the group, and wait until it is gone (at most a few seconds)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    deadline = time.monotonic() + 5
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _die_with_parent() -> None:
    """In vLLM's API server: get SIGTERM if the guard itself dies (e.g. killed by the OOM killer). Safe here,
    unlike in the app, because the guard is single-threaded (PR_SET_PDEATHSIG follows the forking thread)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def guard(parent_pid: int, cmd: list[str]) -> int:
    """Run `cmd` in this process group; end the group when asked (SIGTERM/SIGINT) or when the parent dies."""
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    child = subprocess.Popen(cmd, preexec_fn=_die_with_parent)  # noqa: PLW1509 - async-signal-safe: one prctl call
    code: int | None = None
    while code is None:
        if stop.is_set() or os.getppid() != parent_pid:
            break
        try:
            code = child.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pgid = os.getpgrp()
    try:
        os.killpg(pgid, signal.SIGTERM)  # the API server, its engine core, and anything else they started
    except ProcessLookupError:
        pass
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
    deadline = time.monotonic() + 5
    while [p for p in group_members(pgid) if p != os.getpid()] and time.monotonic() < deadline:
        time.sleep(0.1)
    for p in group_members(pgid):
        if p != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
    return code if code is not None else 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[2] == "--":
        sys.exit(guard(int(sys.argv[1]), sys.argv[3:]))
    sys.exit("usage: python -m tuitune.core.serving.guard PARENT_PID -- COMMAND...")
