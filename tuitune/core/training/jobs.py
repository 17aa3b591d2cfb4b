"""Job control: validate and launch a detached training worker, list runs with their status, stop, resume.

A run is the folder `<project>/runs/<id>/` (every path in `run_dir.RunDir`). Status comes from the events and
the worker process: the last of started/resumed/done/failed/stopped decides; `running` whose pid is gone (or
belongs to another program) is `interrupted` (killed, crashed, machine reboot).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from tuitune.core.training import data as data_mod
from tuitune.core.training.config import PREFERENCE_METHODS, SHARDED, ConfigError, TrainConfig
from tuitune.core.training.events import EventWriter, read_events
from tuitune.core.training.run_dir import RunDir, RunNotFound, all_runs, iso, read_all

if TYPE_CHECKING:
    from tuitune.core.models import Progress
    from tuitune.core.training.resolve import Resolved
    from tuitune.settings import Settings

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
    verdict: dict | None = None  # the held-out verdict after training (the last `verdict` event), if any
    parity: dict | None = None  # the engine parity check (the last `parity` event: pairs, warnings, or why skipped)
    phase: str = ""  # while running, after the last step: merging, checking, the held-out verdict (with counts)
    bad_lines: int = 0  # lines of events.jsonl that could not be read (skipped)

    def to_dict(self) -> dict:
        return asdict(self)


def find(project: Path | str, run_id: str) -> RunDir:
    try:
        return RunDir.find(project, run_id)
    except RunNotFound as e:
        raise JobError(str(e)) from None


def run_dir(project: Path | str, run_id: str) -> Path:
    """The existing run's folder (JobError when there is none)."""
    return find(project, run_id).path


# ---- validation before anything is created ---------------------------------------------------------

def prepare(settings: Settings, cfg: TrainConfig, *, progress: Progress | None = None,
            download: bool = True, reasons: dict[str, str] | None = None) -> tuple[TrainConfig, list[dict]]:
    """Resolve the base model (a Hub ID from the cache, or downloaded with `progress` unless download=False),
    gather and check the data, fill presets. Raises ConfigError/DataError/ModelError/JobError with a clear
    message; creates nothing in the project (a downloaded model stays in the hub's cache). `reasons`, when given,
    gets field -> why, for each field the presets filled."""
    resolved, records = plan(settings, cfg, progress=progress, download=download)
    if reasons is not None:
        reasons.update(resolved.reasons)
    return resolved.cfg, records


def plan(settings: Settings, cfg: TrainConfig, *, progress: Progress | None = None,
         download: bool = True) -> tuple[Resolved, list[dict]]:
    """Gather what the one resolve step (resolve.py) needs: the machine, the base model (located or downloaded)
    and its config, the records and their token lengths; then resolve. Returns (resolved, records)."""
    from tuitune.core import hardware
    from tuitune.core.hub import HubError
    from tuitune.core.models import MEASURED_LR, ModelError, bundled_name, locate
    from tuitune.core.training import presets
    from tuitune.core.training.resolve import DataStats, ModelFacts, resolve

    project = settings.project
    # The preset measures once per machine whether bf16 pays on this CPU (bf16_probe); the result is kept in home.
    hw = presets.detect_hardware(cfg.device, probe_dir=settings.home if cfg.bf16 is None else None)
    machine = hardware.detect()
    if cfg.device == "cuda" and not hw.cuda:
        raise ConfigError("device: cuda was asked for but no CUDA GPU is visible; use device: auto or cpu.")
    if hw.cuda and not machine.described:
        _check_torch_cuda(machine)
    if cfg.accelerate_config and not Path(cfg.accelerate_config).expanduser().is_file():
        raise ConfigError(f"accelerate_config: {cfg.accelerate_config} does not exist (write one with `accelerate "
                          f"config --config_file FILE`, or leave it unset and let tuitune write the engine's config).")
    try:
        found = locate(settings.models_dir, cfg.base, hub=settings.hub, progress=progress, download=download)
    except HubError:
        raise  # its message names the model and what to do (HF_TOKEN, offline, disk space)
    except ModelError as e:
        raise ConfigError(f"base model: {e}") from None
    base_path = found.path
    cfg = cfg.updated(base_path=str(base_path), base_id=found.hub_id, base_revision=found.revision)
    if cfg.method == "pretrain":
        if not cfg.text_files:
            raise ConfigError("method pretrain needs text_files: a list of .txt/.md files in the config")
        records = data_mod.text_records(cfg.text_files)
    elif cfg.data:
        records = data_mod.file_records(cfg.data, cfg.method)
    else:
        records = data_mod.project_records(Path(project), cfg.method)
    data_mod.check_count(records, cfg.method)
    if cfg.holdout is not None and cfg.holdout >= len(records):
        raise ConfigError(f"holdout {cfg.holdout}: must leave records to train on; there are only {len(records)} "
                          f"records (hold out fewer, or leave holdout unset).")
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
    mc = _config(base_path)
    model = ModelFacts(params=presets.param_count(mc), vocab=getattr(mc, "vocab_size", 0) or 0,
                       layers=getattr(mc, "num_hidden_layers", 0) or 32,
                       max_position=getattr(mc, "max_position_embeddings", None),
                       measured_lr=MEASURED_LR.get(bundled_name(base_path)))
    holders = []
    if hw.cuda and not machine.described:
        from tuitune.core import resources

        holders = resources.running()
    return resolve(cfg, DataStats(tuple(lengths)), model, hw, machine, holders), records


def _check_torch_cuda(machine) -> None:
    """nvidia-smi sees a GPU: torch must too, or training would silently run on CPU presets."""
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"this machine has {machine.gpus[0].name} (driver {machine.driver or '?'}), but torch "
                          f"{torch.__version__} cannot use it (built for CUDA {torch.version.cuda or 'none: CPU-only'})."
                          f" Run `tuitune doctor` for what to install, or set device: cpu.")


def _config(path: Path):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(path)


# ---- launch / stop / resume -------------------------------------------------------------------------

def new_run_id(method: str) -> str:
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{method}-{secrets.token_hex(2)}"


def launch(settings: Settings, config: TrainConfig, *, progress: Progress | None = None) -> str:
    """Validate, create runs/<id>/ (config.yaml, data.jsonl, the engine's config file for a sharded run,
    launch.json for several ranks) and start the worker detached (node 0's command when the run spans several
    nodes: the others run theirs from launch.json). Returns the id. `progress` gets (stage, fraction) while a Hub
    base model downloads (before anything is created)."""
    resolved, records = plan(settings, config, progress=progress)
    cfg = resolved.cfg
    run_id = new_run_id(cfg.method)
    run = RunDir.of(settings.project, run_id)
    run.path.mkdir(parents=True)
    # The run keeps its own copy of the data, so it can be resumed or re-run after the project changes.
    data_mod.write_records(run.data, records)
    cfg = cfg.updated(data=str(run.data.resolve()))
    from tuitune.core import atomic

    atomic.write_text(run.config, cfg.to_yaml())
    if cfg.distributed in SHARDED and not cfg.accelerate_config:
        from tuitune.core.training import engine_config

        engine_config.write(run, cfg, no_split_modules(Path(cfg.base_path)))
    if resolved.world > 1 or cfg.distributed in SHARDED:
        import json

        atomic.write_text(run.launch_file, json.dumps(_launch_record(run.path, cfg, resolved.ranks), indent=1))
    _spawn(run.path, home=settings.home)
    return run_id


def no_split_modules(base_path: Path) -> list[str]:
    """The model class's own layers that must stay whole (FSDP wraps each one): `_no_split_modules`."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    try:
        cls = MODEL_FOR_CAUSAL_LM_MAPPING[type(AutoConfig.from_pretrained(base_path))]
    except KeyError:
        return []
    return list(getattr(cls, "_no_split_modules", None) or [])


def _launch_record(run_path: Path, cfg: TrainConfig, ranks: int) -> dict:
    from tuitune.core.training import launch_plan

    return launch_plan.record(ranks, cfg.nodes, cfg.distributed, node_commands(run_path, cfg, ranks),
                              cfg.master_addr, cfg.master_port)


def node_commands(run_path: Path, cfg: TrainConfig, ranks: int) -> list[list[str]]:
    """Each node's command for the run in `run_path` (index = node rank)."""
    from tuitune.core.training.launch_plan import commands

    return commands(run_path, ranks=ranks, nodes=cfg.nodes, master_addr=cfg.master_addr,
                    master_port=cfg.master_port, accelerate_config=cfg.accelerate_config,
                    sharded=cfg.distributed in SHARDED)


def dry_run(settings: Settings, config: TrainConfig) -> dict:
    """What `launch` would do, without creating or starting anything: the resolved config, the worker's
    command line (for a run folder named RUN_ID; with several nodes, each node's), its environment, the effective
    batch, the optimizer steps, where it runs and why the presets chose each value they filled (`reasons`, field ->
    words). A Hub base model must be in the cache already (a dry run downloads nothing); no model weights are
    loaded (tokenizer and config only). `tuitune train --dry-run` and the TUI form's preview both show this."""
    from tuitune.core import hardware

    resolved, records = plan(settings, config, download=False)
    cfg = resolved.cfg
    _, env = _placement(cfg, settings.home)
    run = RunDir.of(settings.project, "RUN_ID")
    gpus = resolved.gpus
    if gpus:
        chosen = [int(i) for i in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if i.strip().isdigit()]
        names = [g.name for g in hardware.detect().gpus if g.index in chosen]
        runs_on = f"{gpus} GPU{'s' if gpus > 1 else ''} ({', '.join(names) or 'CUDA'})"
    else:
        threads = env.get("TUITUNE_TRAIN_THREADS") or (str(cfg.num_threads) if cfg.num_threads else "")
        runs_on = f"CPU ({threads} thread{'s' if threads != '1' else ''})" if threads else "CPU"
        if resolved.ranks > 1:
            each = f", {threads} thread{'s' if threads != '1' else ''} each" if threads else ""
            runs_on = f"{resolved.ranks} CPU ranks (gloo){each}"
    if cfg.nodes > 1:
        runs_on += f" on each of {cfg.nodes} nodes ({resolved.world} ranks)"
    reasons = dict(resolved.reasons)
    if config.device == "auto":
        reasons["device"] = "auto: a CUDA GPU is visible" if gpus else "auto: no CUDA GPU visible"
    launch = _launch_record(run.path, cfg, resolved.ranks)
    need = resolved.need
    return {"config": cfg.model_dump(mode="json"), "config_yaml": cfg.to_yaml(), "records": len(records),
            "train_records": resolved.n_train, "launcher": launch["node_commands"][0]["command"], "env": env,
            "node_commands": launch["node_commands"], "world_size": resolved.world, "ranks": resolved.ranks,
            "nodes": cfg.nodes, "distributed": cfg.distributed,
            "gpus": max(1, gpus), "device": "cuda" if gpus else "cpu", "runs_on": runs_on,
            "gpu_gib_per_rank": round(need.gpu_gib, 1) if need else None,
            "effective_batch": resolved.effective_batch, "steps": resolved.steps, "reasons": reasons}


def effective_batch(cfg: TrainConfig, gpus: int) -> int:
    from tuitune.core.training.gpu import effective_batch as eff

    return eff(cfg, gpus)


def worker_command(d: Path, gpus: int) -> list[str]:
    """One process on CPU or one GPU; with several GPUs, torchrun starts one worker per GPU (DDP)."""
    from tuitune.core.training.gpu import launcher

    return launcher(d, gpus)


def _placement(cfg: TrainConfig, home: Path | None = None) -> tuple[int, dict[str, str]]:
    """Worker processes on this node (ranks: GPUs, or cpu_ranks on CPU) and the environment its worker gets:
    CUDA_VISIBLE_DEVICES on GPUs (the ones with the most free memory), a thread budget beside what this app
    already runs on CPU (split over the CPU ranks), and the app's home (TUITUNE_HOME: the worker's own Settings
    read the environment; its probe cache and judge come from there)."""
    ranks, env = _devices(cfg)
    return ranks, {**env, **({"TUITUNE_HOME": str(home)} if home else {})}


def _devices(cfg: TrainConfig) -> tuple[int, dict[str, str]]:
    from tuitune.core import hardware, resources
    from tuitune.core.training import gpu
    from tuitune.core.training.presets import detect_hardware

    hw = detect_hardware(cfg.device)
    machine = hardware.detect()
    gpus = gpu.resolve_gpus(cfg, machine, hw.cuda)
    holders = [] if machine.described else resources.running()
    if gpus:
        chosen = sorted(machine.gpus, key=lambda g: (-g.free_gib, g.index))[:gpus]
        return gpus, {"CUDA_VISIBLE_DEVICES": ",".join(str(g.index) for g in sorted(chosen, key=lambda g: g.index))}
    ranks = max(1, cfg.cpu_ranks)
    budget = resources.thread_budget(machine, holders)
    env = budget.env_training()
    if env and not cfg.num_threads:
        env["TUITUNE_TRAIN_THREADS"] = str(max(1, budget.threads // ranks))
    elif ranks > 1 and not cfg.num_threads:
        env["TUITUNE_TRAIN_THREADS"] = str(max(1, (machine.cpu_cores or 1) // ranks))
    return ranks, env


def _spawn(d: Path, home: Path | None = None) -> int:
    """Start the worker detached; `home`: the tuitune home the app was started with (None: the environment's)."""
    run = RunDir(d)
    cfg = TrainConfig.load(run.config)
    ranks, extra = _placement(cfg, home)
    env = {**os.environ, **extra}
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    with open(run.log, "ab") as log:
        proc = subprocess.Popen(node_commands(d, cfg, ranks)[0],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=str(d), env=env, close_fds=True)
    from tuitune.core import atomic

    atomic.write_text(run.pid_file, f"{proc.pid}\n")
    return proc.pid


def _pid(d: Path) -> int | None:
    try:
        return int(RunDir(d).pid_file.read_text().strip())
    except (OSError, ValueError):
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
    for pid in _stop_targets(d):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    if timeout > 0:
        return wait(d, timeout=timeout)
    return info


def _stop_targets(d: Path) -> list[int]:
    """The worker processes to signal: the worker itself, or under torchrun the rank processes (the launcher
    would forward the signal and kill them after its own timeout; the ranks instead agree on the stop step and
    save the last checkpoint before exiting normally)."""
    import psutil

    pid = _pid(d)
    if pid is None:
        return []
    try:
        p = psutil.Process(pid)
        cmd = " ".join(p.cmdline())
        if "torch.distributed.run" in cmd or "accelerate.commands.launch" in cmd:
            ranks = [c.pid for c in p.children(recursive=True)
                     if "tuitune.core.training.worker" in " ".join(c.cmdline())]
            return ranks or [pid]
    except (psutil.Error, OSError):
        pass
    return [pid]


class NoCheckpoint(JobError):
    """Resuming would silently start over: the run has no checkpoint left."""


def resume(project: Path | str, run_id: str, *, from_scratch: bool = False, home: Path | None = None) -> str:
    """Continue an interrupted, stopped or failed run from its last checkpoint (same id, same folder).
    Without a checkpoint that would mean starting again from step 0: only when `from_scratch` says so."""
    run = find(project, run_id)
    info = run_info(run.path)
    if info.status == "running":
        raise JobError(f"Run {run_id} is still running; wait for it or stop it first.")
    if info.status == "done":
        raise JobError(f"Run {run_id} already finished; start a new run instead.")
    cfg = TrainConfig.load(run.config)
    if not Path(cfg.base_path).is_dir():
        raise JobError(f"The base model folder {cfg.base_path} of run {run_id} is gone; cannot resume.")
    ck = run.last_checkpoint()
    if ck is None and not from_scratch:
        gone = " (its checkpoints were deleted)" if info.step > 0 else ""
        raise NoCheckpoint(f"Run {run_id} has no checkpoint to resume from{gone}: it would start again from "
                           f"step 0. Ask for a restart from scratch to do that.")
    EventWriter(run.path).emit("resume_requested", checkpoint=str(ck) if ck else None,
                               note=None if ck else "restart from scratch: training starts again from step 0")
    _spawn(run.path, home=home)
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

def run_info(d: Path | str) -> RunInfo:
    run = RunDir(Path(d))
    state = read_all(run.events)
    status = state.status
    if status == "running" and not worker_alive(run.path):
        # Freshly spawned workers may not have written `started` yet; the pid file is written at spawn.
        status = "interrupted"
    try:
        cfg = TrainConfig.load(run.config)
        method, base, max_steps_cfg = cfg.method, cfg.base, cfg.max_steps
    except ConfigError:
        method, base, max_steps_cfg = "?", "?", -1
    created = iso(state.started)
    if not created and run.config.exists():
        created = iso(run.config.stat().st_mtime)
    last = state.terminal
    error = str(last.get("error", "")) if status == "failed" else ""
    hint = str(last.get("hint", "")) if status == "failed" else ""
    if status == "interrupted":
        error = ("the worker process is gone without a done/failed event (killed, crashed, or ended by the OS "
                 "when memory ran out: then lower micro_batch_size/max_length or use qlora); it can be resumed "
                 "from its last checkpoint")
    return RunInfo(id=run.id, status=status, method=method, base=base, step=state.step,
                   max_steps=state.max_steps or max_steps_cfg, loss=state.loss, created=created, error=error,
                   hint=hint, path=str(run.path), verdict=state.verdict, parity=state.parity,
                   bad_lines=state.bad_lines,
                   phase=state.phase if status == "running" else "")


def list_runs(project: Path | str) -> list[RunInfo]:
    return [run_info(r.path) for r in all_runs(project)]
