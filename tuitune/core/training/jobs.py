"""Job control: validate and launch a detached training worker, list runs with their status, stop, resume.

A run is the folder `<project>/runs/<id>/`: config.yaml, data.jsonl, events.jsonl, worker.pid, worker.log,
chat_template.jinja, checkpoints/, tensorboard/, adapter/, merged/.
Status comes from the events and the worker process: the last of started/resumed/done/failed/stopped decides;
`running` whose pid is gone (or belongs to another program) is `interrupted` (killed, crashed, machine reboot).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from tuitune.core.training import data as data_mod
from tuitune.core.training.config import PREFERENCE_METHODS, ConfigError, TrainConfig
from tuitune.core.training.events import TERMINAL, EventWriter, read_events

__all__ = [
    "JobError",
    "RunInfo",
    "launch",
    "list_runs",
    "prepare",
    "read_events",
    "resume",
    "run_dir",
    "run_info",
    "stop",
    "wait",
]

PID_FILE = "worker.pid"
LOG_FILE = "worker.log"
STATUSES = ("running", "done", "failed", "interrupted", "stopped")


class JobError(Exception):
    """A run that cannot be launched, found, stopped or resumed, with what to do about it."""


@dataclass
class RunInfo:
    id: str
    status: str  # running / done / failed / interrupted / stopped
    method: str
    base: str
    step: int
    max_steps: int
    loss: float | None
    created: str
    error: str = ""
    hint: str = ""  # what to do about a failure (a failed event's advice, e.g. for out-of-memory)
    path: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def runs_root(project: Path | str) -> Path:
    return Path(project) / "runs"


def run_dir(project: Path | str, run_id: str) -> Path:
    d = runs_root(project) / run_id
    if not (d / "config.yaml").exists():
        known = ", ".join(sorted(p.name for p in runs_root(project).glob("*") if (p / "config.yaml").exists()))
        raise JobError(f"No run {run_id!r} in {runs_root(project)}. Known runs: {known or 'none'} "
                       f"(see `tuitune runs`).")
    return d


# ---- validation before anything is created ---------------------------------------------------------

def prepare(project: Path | str, cfg: TrainConfig, *, models_dir: Path | None = None) -> tuple[TrainConfig, list[dict]]:
    """Resolve the base model, gather and check the data, fill presets. Raises ConfigError/DataError/
    ModelError/JobError with a clear message; creates nothing."""
    from tuitune.core.models import ModelError, resolve
    from tuitune.core.training import presets
    from tuitune.settings import Settings

    # The preset measures once per machine whether bf16 pays on this CPU (bf16_probe); the result is kept in home.
    hw = presets.detect_hardware(cfg.device, probe_dir=Settings().home if cfg.bf16 is None else None)
    if cfg.device == "cuda" and not hw.cuda:
        raise ConfigError("device: cuda was asked for but no CUDA GPU is visible; use device: auto or cpu.")
    if not hw.cuda:
        for name in ("fp16", "padding_free"):
            if getattr(cfg, name):
                raise ConfigError(f"{name}: true needs a CUDA GPU and none is visible (on CPU, train without "
                                  f"padding, one record per pass). Remove {name} from the config or set it to false.")
        if cfg.bf16 and not hw.bf16:
            raise ConfigError("bf16: true needs a CUDA GPU or a CPU with native bf16 (AVX512-BF16, AMX or Arm "
                              "BF16); this one would emulate it, slower than fp32. Remove bf16 or set it to false.")
    models_dir = models_dir or Settings().models_dir
    try:
        base_path = resolve(models_dir, cfg.base)
    except ModelError as e:
        raise ConfigError(f"base model: {e}") from None
    cfg = cfg.updated(base_path=str(base_path))
    if cfg.method == "pretrain":
        if not cfg.text_files:
            raise ConfigError("method pretrain needs text_files: a list of .txt/.md files in the config")
        records = data_mod.text_records(cfg.text_files)
    elif cfg.data:
        records = data_mod.file_records(cfg.data, cfg.method)
    else:
        records = data_mod.project_records(Path(project), cfg.method)
    data_mod.check_count(records, cfg.method)
    if cfg.holdout is None:
        cfg = cfg.updated(holdout=3 if cfg.method not in ("pretrain",) and len(records) >= 12 else 0)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_path)
    if cfg.method != "pretrain" and not tok.chat_template:
        raise ConfigError(f"{base_path} has no chat template; chat fine-tuning needs one (use an instruct model, "
                          f"or method pretrain for raw text).")
    if cfg.method in PREFERENCE_METHODS:
        lengths = data_mod.preference_lengths(tok, records)
    elif cfg.method == "pretrain":
        lengths = [cfg.max_length or 512] * max(1, sum(len(r["text"]) for r in records) // 2000)
    else:
        lengths = data_mod.tokenize_sft(tok, records).lengths
    if cfg.max_length is not None and cfg.method != "pretrain":
        data_mod.check_lengths(lengths, cfg.max_length)
    max_pos = getattr(_config(base_path), "max_position_embeddings", None)
    cfg = presets.apply(cfg, lengths, hw)
    if cfg.batch_size % cfg.micro_batch_size:
        raise ConfigError(f"micro_batch_size {cfg.micro_batch_size} must divide batch_size {cfg.batch_size} "
                          f"(the optimizer steps once per batch_size records); pick a divisor or leave it unset.")
    if max_pos and cfg.max_length > max_pos:
        raise ConfigError(f"max_length {cfg.max_length} exceeds what {cfg.base} supports ({max_pos}); shorten "
                          f"the longest records or lower max_length.")
    return cfg, records


def _config(path: Path):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(path)


# ---- launch / stop / resume -------------------------------------------------------------------------

def new_run_id(method: str) -> str:
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{method}-{secrets.token_hex(2)}"


def launch(project: Path | str, config: TrainConfig, *, models_dir: Path | None = None) -> str:
    """Validate, create runs/<id>/ (config.yaml, data.jsonl) and start the worker detached. Returns the id."""
    cfg, records = prepare(project, config, models_dir=models_dir)
    run_id = new_run_id(cfg.method)
    d = runs_root(project) / run_id
    d.mkdir(parents=True)
    # The run keeps its own copy of the data, so it can be resumed or re-run after the project changes.
    data_mod.write_records(d / "data.jsonl", records)
    cfg = cfg.updated(data=str((d / "data.jsonl").resolve()))
    from tuitune.core import atomic

    atomic.write_text(d / "config.yaml", cfg.to_yaml())
    _spawn(d)
    return run_id


def worker_command(d: Path, gpus: int) -> list[str]:
    """One process on CPU or one GPU; with several GPUs, torchrun starts one worker per GPU (DDP)."""
    worker = ["-m", "tuitune.core.training.worker", str(d.resolve())]
    if gpus > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}", *worker]
    return [sys.executable, *worker]


def _spawn(d: Path) -> int:
    from tuitune.core.training.presets import detect_hardware

    cfg = TrainConfig.load(d / "config.yaml")
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    with open(d / LOG_FILE, "ab") as log:
        proc = subprocess.Popen(worker_command(d, detect_hardware(cfg.device).gpus),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=str(d), env=env, close_fds=True)
    from tuitune.core import atomic

    atomic.write_text(d / PID_FILE, f"{proc.pid}\n")
    return proc.pid


def _pid(d: Path) -> int | None:
    try:
        return int((d / PID_FILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def worker_alive(d: Path) -> bool:
    """The recorded pid is alive and is our worker for this run folder (not a recycled pid)."""
    import psutil

    pid = _pid(d)
    if pid is None:
        return False
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        cmd = " ".join(p.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return "tuitune.core.training.worker" in cmd and d.name in cmd


def stop(project: Path | str, run_id: str, *, timeout: float = 0) -> RunInfo:
    """Ask the worker to checkpoint and exit (SIGTERM). With timeout > 0 wait that long for `stopped`."""
    d = run_dir(project, run_id)
    info = run_info(d)
    if info.status != "running":
        raise JobError(f"Run {run_id} is not running (status: {info.status}); nothing to stop.")
    pid = _pid(d)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    if timeout > 0:
        return wait(d, timeout=timeout)
    return info


def resume(project: Path | str, run_id: str) -> str:
    """Continue an interrupted, stopped or failed run from its last checkpoint (same id, same folder)."""
    from tuitune.core.training.worker import last_checkpoint

    d = run_dir(project, run_id)
    info = run_info(d)
    if info.status == "running":
        raise JobError(f"Run {run_id} is still running; watch it with `tuitune runs watch {run_id}`.")
    if info.status == "done":
        raise JobError(f"Run {run_id} already finished; start a new run with `tuitune train`.")
    cfg = TrainConfig.load(d / "config.yaml")
    if not Path(cfg.base_path).is_dir():
        raise JobError(f"The base model folder {cfg.base_path} of run {run_id} is gone; cannot resume.")
    ck = last_checkpoint(d)
    EventWriter(d).emit("resume_requested", checkpoint=str(ck) if ck else None,
                        note=None if ck else "no checkpoint yet: training restarts from step 0")
    _spawn(d)
    return run_id


def wait(d: Path, *, timeout: float, poll: float = 1.0) -> RunInfo:
    """Wait until the run is no longer running (or timeout seconds pass)."""
    end = time.monotonic() + timeout
    while True:
        info = run_info(d)
        if info.status != "running" or time.monotonic() > end:
            return info
        time.sleep(poll)


# ---- listing ------------------------------------------------------------------------------------------

def status_from_events(events: list[dict]) -> tuple[str, dict]:
    """(status as the events tell it, the last terminal event or {}): running unless a terminal event came
    after the last start."""
    status, last = "running", {}
    for ev in events:
        kind = ev.get("event")
        if kind in ("started", "resumed", "resume_requested"):
            status, last = "running", {}
        elif kind in TERMINAL:
            status, last = kind, ev
    return status, last


def run_info(d: Path) -> RunInfo:
    d = Path(d)
    events, _ = read_events(d)
    status, last = status_from_events(events)
    if status == "running" and not worker_alive(d):
        # Freshly spawned workers may not have written `started` yet; the pid file is written at spawn.
        status = "interrupted"
    try:
        cfg = TrainConfig.load(d / "config.yaml")
        method, base, max_steps_cfg = cfg.method, cfg.base, cfg.max_steps
    except ConfigError:
        method, base, max_steps_cfg = "?", "?", -1
    steps = [e for e in events if e.get("event") == "step"]
    step = steps[-1]["step"] if steps else 0
    max_steps = steps[-1].get("max_steps", max_steps_cfg) if steps else max_steps_cfg
    if last.get("event") == "done":
        step = last.get("step", step)
    created = datetime.fromtimestamp((d / "config.yaml").stat().st_mtime, timezone.utc).isoformat(
        timespec="seconds") if (d / "config.yaml").exists() else ""
    if events:
        created = datetime.fromtimestamp(events[0]["time"], timezone.utc).isoformat(timespec="seconds")
    error = last.get("error", "") if status == "failed" else ""
    hint = last.get("hint", "") if status == "failed" else ""
    if status == "interrupted":
        error = (f"the worker process is gone without a done/failed event (killed, crashed, or ended by the OS "
                 f"when memory ran out: then lower micro_batch_size/max_length or use qlora); continue with "
                 f"`tuitune train --resume {d.name}`")
    return RunInfo(id=d.name, status=status, method=method, base=base, step=step, max_steps=max_steps,
                   loss=steps[-1].get("loss") if steps else None, created=created, error=error, hint=hint,
                   path=str(d))


def list_runs(project: Path | str) -> list[RunInfo]:
    root = runs_root(project)
    if not root.is_dir():
        return []
    dirs = sorted((p for p in root.iterdir() if (p / "config.yaml").exists()), key=lambda p: p.name)
    return [run_info(p) for p in dirs]
