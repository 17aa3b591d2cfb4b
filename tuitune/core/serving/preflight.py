"""Facts checked before and after a vLLM start: free ports, chat templates, memory, what a failed log means.

Nothing here starts a process; `VLLMServer` (vllm.py) and the pool use these to refuse early with advice.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import sys
from pathlib import Path

from tuitune.core.serving.errors import ChatTemplateMissing

HOST = "127.0.0.1"
LOG_TAIL_LINES = 25


def port_is_free(port: int, host: str = HOST) -> bool:
    """Nothing listens on host:port, so a server could bind it. SO_REUSEADDR as uvicorn sets it: connections of
    a stopped server lingering in TIME_WAIT do not make the port "taken"."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(preferred: int | None = None, host: str = HOST) -> int:
    """`preferred` if it can be bound now, else a free port the kernel picks."""
    if preferred and port_is_free(preferred, host):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def has_chat_template(model: Path) -> bool:
    if (model / "chat_template.jinja").exists() or (model / "chat_template.json").exists():
        return True
    cfg = model / "tokenizer_config.json"
    if cfg.exists():
        try:
            return bool(json.loads(cfg.read_text(encoding="utf-8")).get("chat_template"))
        except (json.JSONDecodeError, OSError):
            return False
    return False


def check_chat_template(model: Path) -> None:
    if not has_chat_template(model):
        raise ChatTemplateMissing(
            f"{model} has no chat template (no chat_template.jinja, and tokenizer_config.json has no "
            f"'chat_template'), so it cannot answer chat messages. Use an instruct/chat model, or copy the chat "
            f"template of the model it was trained from into that folder.")


def folder_gib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.suffix in
               (".safetensors", ".bin")) / 2**30


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def has_gpu() -> bool:
    """A CUDA GPU is visible (cheap check, no torch import)."""
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia").exists()


def available_gib() -> float:
    import psutil

    return psutil.virtual_memory().available / 2**30


def vllm_unavailable_reason(need_gib: float = 0.0, *, gpu: bool = False) -> str | None:
    """Why vLLM cannot run here, or None if it can (as far as can be told without starting it)."""
    if not sys.platform.startswith("linux"):
        return f"vLLM has no build for {sys.platform} that tuitune supports (Linux only)."
    if importlib.util.find_spec("vllm") is None:
        return ("vLLM is not installed in this environment; run `python -m tuitune.install` to install the build "
                "for this machine (CUDA with a GPU, CPU otherwise).")
    if need_gib:
        avail = available_gib()
        if avail < need_gib:
            if gpu:  # weights and KV cache live on the GPU: only the process itself needs RAM
                return (f"too little free RAM for vLLM: about {need_gib:.1f} GiB needed by the server process, "
                        f"{avail:.1f} GiB available. Close other programs.")
            return (f"too little free memory for vLLM: about {need_gib:.1f} GiB needed (weights + KV cache + "
                    f"process), {avail:.1f} GiB available. Close other programs or lower TUITUNE_VLLM_KV_CACHE_GIB.")
    return None


def out_of_memory(log_text: str) -> bool:
    low = log_text.lower()
    return any(k in low for k in ("out of memory", "cannot allocate memory", "memoryerror",
                                  "less than requested memory for kv", "less than desired gpu memory utilization",
                                  "no available memory for the cache blocks",
                                  "larger than the available kv cache memory"))


# vLLM 0.32's GPU memory messages (v1/worker/utils.py, v1/core/kv_cache_utils.py) and what they mean here.
GPU_MESSAGES = (
    ("less than desired gpu memory utilization",
     ("Another program took GPU memory after tuitune planned this server's share (tuitune plans from the memory "
     "free at start). `nvidia-smi` lists what holds it; stop it or wait for it, then start again.")),
    ("no available memory for the cache blocks",
     ("The server's share of the GPU holds its weights but leaves nothing for the KV cache. Stop a training run "
     "or another server on that GPU, serve fewer models at once, or a smaller or quantized model.")),
    ("max seq len",
     ("The context length does not fit the KV cache of the server's share of the GPU. Free GPU memory (stop "
     "another server or a training run) so the planner can give it more, or serve fewer models at once.")),
    ("cuda out of memory",
     ("The GPU ran out of memory while the server started. Stop what holds GPU memory (`nvidia-smi` lists it: a "
     "training run, another server), serve fewer models at once, or a smaller or quantized model.")),
)


def diagnose(log_text: str, *, gpu: bool = False) -> str:
    """What to do next, from the log of a server that failed to start (on a GPU machine: GPU advice only)."""
    low = log_text.lower()
    if "address already in use" in low:
        return "The port was taken by another program meanwhile; start again (a new free port is picked)."
    if "no module named 'vllm'" in low or "no module named vllm" in low:
        return "vLLM is not installed: run `python -m tuitune.install`."
    for needle, advice in GPU_MESSAGES:
        if needle in low:
            return advice
    if gpu and out_of_memory(low):
        return GPU_MESSAGES[-1][1]
    if out_of_memory(low):
        return ("vLLM ran out of memory: lower TUITUNE_VLLM_KV_CACHE_GIB, serve fewer models at once, or use the "
                "transformers engine for chat.")
    if "lora" in low and ("rank" in low or "target" in low):
        return "vLLM refused the LoRA adapter; serve the run's merged model instead."
    if "chat template" in low:
        return "The model has no usable chat template; use an instruct model."
    if "tuitune.core.serving.auth" in low:
        return "vLLM could not import tuitune's key check (tuitune.core.serving.auth); reinstall tuitune here."
    return "See the full log for the cause."
