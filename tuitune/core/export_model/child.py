"""`python -m tuitune.core.export_model.child SCRIPT ARGS...` (or `-m MODULE ARGS...`): run a tool (the GGUF
converter, the quantizer) so that it dies with the export that started it.

On Linux the child asks the kernel for SIGKILL when its parent dies (PR_SET_PDEATHSIG), also when the parent is
killed with SIGKILL, so a killed export leaves no converter writing on. This is done here, in the child, rather
than with Popen's preexec_fn, which is unsafe in a process with threads (the CLI's progress bar has one).
"""

from __future__ import annotations

import os
import runpy
import signal
import sys

PARENT_ENV = "TUITUNE_EXPORT_PARENT"


def die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    parent = os.environ.get(PARENT_ENV, "")
    if parent.isdigit() and os.getppid() != int(parent):  # the parent died before prctl took effect
        os._exit(137)


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit("usage: python -m tuitune.core.export_model.child SCRIPT|-m MODULE ARGS...")
    die_with_parent()
    if argv[0] == "-m" and len(argv) > 1:
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(argv)
        sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
        runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
