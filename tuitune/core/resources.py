"""What this app already runs (vLLM servers, training workers) and the share of the CPU a new process gets.

Measured on a 2-core machine: two training workers each fell from ~78 to ~10 trained tokens/s, because each ran
torch's default threads on all cores and they spun against each other. So every process the app starts gets a
thread budget from what already runs: cores / (running heavy processes + 1), at least 1. The decisions are pure
functions of a `Machine` and a list of `Holder`s; `running()` finds the holders on this machine (psutil, plus
`nvidia-smi` for the GPU memory each one holds).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from tuitune.core.hardware import Machine

WORKER_MARK = "tuitune.core.training.worker"
SERVER_MARK = "vllm.entrypoints.openai.api_server"


@dataclass(frozen=True)
class Holder:
    """A process of this app that holds resources."""

    kind: str  # "server" or "training"
    name: str  # served model name or run id
    pid: int = 0
    gpus: tuple[int, ...] = ()
    gpu_gib: float = 0.0  # GPU memory it holds (per GPU it uses)
    cores: tuple[int, ...] = ()  # CPU cores it is bound to (CPU vLLM), if known

    def describe(self) -> str:
        where = f" on GPU {','.join(map(str, self.gpus))}" if self.gpus else ""
        held = f" holding {self.gpu_gib:.1f} GiB" if self.gpu_gib else ""
        pid = f", pid {self.pid}" if self.pid else ""
        return f"{'vLLM server' if self.kind == 'server' else 'training run'} {self.name}{held}{where}{pid}"


@dataclass(frozen=True)
class ThreadBudget:
    threads: int
    cores: tuple[int, ...]  # the cores to bind to (CPU vLLM), the last `threads` cores not bound by others
    note: str = ""
    alone: bool = False  # nothing else of this app runs: the libraries' own defaults apply (measured as they are)

    def env_training(self) -> dict[str, str]:
        if self.alone:
            return {}
        return {"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}

    def env_vllm_cpu(self) -> dict[str, str]:
        """vLLM's CPU build binds its OpenMP threads to VLLM_CPU_OMP_THREADS_BIND (core ids, "0-3" or "0,2")."""
        if self.alone:
            return {}
        return {"VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, self.cores)), "OMP_NUM_THREADS": str(self.threads)}


def thread_budget(machine: Machine, holders: list[Holder]) -> ThreadBudget:
    """Threads for one more CPU-heavy process beside `holders`: an equal share of the cores, at least 1; cores for
    binding are picked among those no running server is bound to (from the top, leaving core 0 to the UI)."""
    cores = machine.cpu_cores
    heavy = [h for h in holders if not h.gpus]  # a GPU process mostly waits on the GPU
    share = max(1, cores // (len(heavy) + 1))
    note = ""
    if len(heavy) + 1 > cores:
        note = (f"{len(heavy)} CPU-heavy processes of this app already run on {cores} cores; this one gets 1 "
                f"thread and everything runs slower until one of them ends.")
    taken = {c for h in heavy for c in h.cores}
    free = [c for c in range(cores - 1, -1, -1) if c not in taken] or list(range(cores - 1, -1, -1))
    return ThreadBudget(share, tuple(sorted(free[:share])), note, alone=not heavy)


def _gpu_usage() -> dict[int, tuple[str, float]]:
    """pid -> (GPU uuid, MiB used) from nvidia-smi's compute apps, or {} without nvidia-smi."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return {}
    try:
        out = subprocess.run([exe, "--query-compute-apps=pid,gpu_uuid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return parse_compute_apps(out)


def parse_compute_apps(text: str) -> dict[int, tuple[str, float]]:
    usage: dict[int, tuple[str, float]] = {}
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[0].isdigit():
            try:
                usage[int(parts[0])] = (parts[1], float(parts[2]) / 1024)
            except ValueError:
                continue
    return usage


def _cores_of(env: dict[str, str]) -> tuple[int, ...]:
    out: list[int] = []
    for part in env.get("VLLM_CPU_OMP_THREADS_BIND", "").split(","):
        a, _, b = part.partition("-")
        if a.strip().isdigit():
            out += list(range(int(a), int(b) + 1)) if b.strip().isdigit() else [int(a)]
    return tuple(out)


def running() -> list[Holder]:
    """The vLLM servers and training workers of this app running on this machine (any process of this user)."""
    import psutil

    usage = _gpu_usage()
    holders: list[Holder] = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = p.info.get("cmdline") or []
        text = " ".join(cmd)
        if WORKER_MARK in text and "torch.distributed.run" not in text:
            kind, name = "training", cmd[-1].rstrip("/").rsplit("/", 1)[-1]
        elif SERVER_MARK in text and "tuitune.core.serving.guard" not in text:
            kind = "server"
            name = cmd[cmd.index("--served-model-name") + 1] if "--served-model-name" in cmd else "?"
        else:
            continue
        try:
            env = p.environ()
        except (psutil.Error, OSError):
            env = {}
        try:  # vLLM's engine core, a child process, is what holds the GPU memory
            family = [p.info["pid"], *(c.pid for c in p.children(recursive=True))]
        except (psutil.Error, OSError):
            family = [p.info["pid"]]
        gib = sum(usage[pid][1] for pid in family if pid in usage)
        mask = env.get("CUDA_VISIBLE_DEVICES", "")
        gpus = tuple(int(x) for x in mask.split(",") if x.isdigit()) or (0,) if gib else ()
        holders.append(Holder(kind, name, p.info["pid"], gpus, round(gib, 2), _cores_of(env)))
    return holders
