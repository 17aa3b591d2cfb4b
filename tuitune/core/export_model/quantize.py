"""GGUF quant types, and llama.cpp's quantizer for the ones the converter does not write itself.

f32/f16/bf16/q8_0 come straight from the converter. The k-quants and the older 4/5-bit types need llama.cpp's
`llama_model_quantize`, which tuitune calls through llama-cpp-python when that is installed (it builds llama.cpp
from source; tuitune does not install it by default, see docs/export-model.md). The quantizer runs in a subprocess
of its own: its C code can only take that process down, and it dies with the export.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from tuitune.core.export_model import ExportError
from tuitune.core.export_model.converter import CONVERTER_OUTTYPES, run_tool

# quant -> what it is (sizes for a 7-8B model, from llama.cpp's quantize tool)
QUANTS: dict[str, str] = {
    "f32": "32-bit float, no loss, 4 bytes per weight",
    "f16": "16-bit float, practically no loss, 2 bytes per weight",
    "bf16": "bfloat16, no loss for a bf16-trained model, 2 bytes per weight",
    "q8_0": "8-bit, practically no loss, ~1.06 bytes per weight (the default)",
    "q6_k": "6-bit k-quant, very small loss",
    "q5_k_m": "5-bit k-quant (medium), small loss",
    "q5_k_s": "5-bit k-quant (small)",
    "q5_0": "5-bit, older type",
    "q5_1": "5-bit, older type",
    "q4_k_m": "4-bit k-quant (medium): the usual choice for laptops, some loss",
    "q4_k_s": "4-bit k-quant (small)",
    "q4_0": "4-bit, older type",
    "q4_1": "4-bit, older type",
    "q3_k_l": "3-bit k-quant (large), clear loss",
    "q3_k_m": "3-bit k-quant (medium)",
    "q3_k_s": "3-bit k-quant (small)",
    "q2_k": "2-bit k-quant, large loss",
}
LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"
_TENSOR = re.compile(rb"\[\s*(\d+)\s*/\s*(\d+)\s*\]")


class UnknownQuant(ExportError):
    """A --quant that is not a GGUF type tuitune knows."""


class QuantizerMissing(ExportError):
    """A lower-bit quant was asked for and llama.cpp's quantizer is not installed."""


def check_quant(quant: str) -> str:
    """The normalised quant name (q4_K_M -> q4_k_m), or UnknownQuant listing the choices."""
    q = (quant or "").strip().lower().replace("-", "_")
    if q not in QUANTS:
        raise UnknownQuant(f"unknown --quant {quant!r}; choose one of: {', '.join(QUANTS)}")
    return q


def needs_quantizer(quant: str) -> bool:
    return check_quant(quant) not in CONVERTER_OUTTYPES


def quantizer_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def require_quantizer(quant: str) -> None:
    """QuantizerMissing, saying what is needed, when `quant` needs llama.cpp's quantizer and it is not here."""
    if needs_quantizer(quant) and not quantizer_available():
        raise QuantizerMissing(
            f"--quant {quant} needs llama.cpp's quantizer, which is not installed here; the converter itself "
            f"writes only {', '.join(CONVERTER_OUTTYPES)}. Either install llama-cpp-python into this environment "
            f"({sys.executable} -m pip install {LLAMA_CPP_PYTHON}; it compiles llama.cpp, which needs cmake and a "
            f"C++ compiler and takes several minutes), or export --quant f16 and quantize that file with "
            f"llama.cpp's own tool: llama-quantize MODEL-f16.gguf MODEL-{quant}.gguf {quant.upper()}.")


def _main(argv: list[str]) -> int:  # runs in the quantizer's own process: SRC DST QUANT THREADS
    import ctypes

    import llama_cpp

    src, dst, quant, threads = argv
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + quant.upper())
    params.nthread = int(threads)
    return int(llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params)))


def quantize(src: Path | str, dst: Path | str, quant: str,
             progress: Callable[[float], None] | None = None) -> list[str]:
    """llama.cpp's quantizer: `src` (an f16/bf16/f32 GGUF) -> `dst` in `quant`. Returns the argv it ran."""
    quant = check_quant(quant)
    require_quantizer(quant)
    argv = [sys.executable, "-m", __name__, str(src), str(dst), quant, str(os.cpu_count() or 1)]

    def parse(line: bytes) -> bool:
        m = _TENSOR.search(line)
        if m and progress and int(m.group(2)):
            progress(int(m.group(1)) / int(m.group(2)))
        return bool(m)

    run_tool(argv, dict(os.environ), "llama.cpp's quantizer (llama_model_quantize)", parse)
    if not Path(dst).is_file():
        raise ExportError(f"llama.cpp's quantizer exited 0 but wrote no {dst}")
    return argv


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
