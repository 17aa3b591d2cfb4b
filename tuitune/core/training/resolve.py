"""One resolve step: (config, data statistics, model facts, hardware) -> the config a run uses, why each filled-in
value is what it is, and where and how the run is placed (ranks, nodes, GPU memory per rank).

Pure: it reads nothing from disk and starts nothing, so made-up machines and models test it. jobs.prepare gathers
the inputs (the base model's config, the records' token lengths, the machine description) and calls it once;
`train --dry-run` prints what it returns and the TUI form previews it. Order: devices and GPU options, the held-out
share, the lengths, the presets (presets.apply), the distributed setting, the schedule across ranks, the memory
per GPU (refused with the choice that would fit), the last consistency checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tuitune.core.hardware import Machine
from tuitune.core.resources import Holder
from tuitune.core.training import gpu, presets, shard_plan
from tuitune.core.training.config import SHARDED, ConfigError, TrainConfig
from tuitune.core.training.presets import Hardware


@dataclass(frozen=True)
class DataStats:
    lengths: tuple[int, ...]  # token length of every record (held-out ones included)

    @property
    def records(self) -> int:
        return len(self.lengths)


@dataclass(frozen=True)
class ModelFacts:
    params: int | None = None
    vocab: int = 0
    layers: int = 32
    max_position: int | None = None
    measured_lr: tuple[float, str] | None = None  # models.MEASURED_LR for a bundled base


@dataclass(frozen=True)
class Engines:
    """What is installed, where it decides something (None: look it up)."""
    flash_attn: bool | None = None
    liger: bool | None = None
    deepspeed: bool | None = None


@dataclass
class Resolved:
    cfg: TrainConfig
    reasons: dict[str, str] = field(default_factory=dict)
    gpus: int = 0  # GPUs per node (0 on CPU)
    ranks: int = 1  # worker processes per node
    nodes: int = 1
    need: shard_plan.Need | None = None  # per GPU (CUDA only)
    steps: int = 0
    n_train: int = 0

    @property
    def world(self) -> int:
        return self.ranks * self.nodes

    @property
    def effective_batch(self) -> int:
        return (self.cfg.batch_size or 1) * self.cfg.grad_accum * self.world


def resolve(cfg: TrainConfig, data: DataStats, model: ModelFacts, hw: Hardware, machine: Machine,
            holders: list[Holder] | tuple[Holder, ...] = (), engines: Engines = Engines()) -> Resolved:
    """The config with every unset value filled and checked, and the run's placement. Raises ConfigError (or
    DataError for a record longer than a set max_length) naming the field and what to change."""
    from tuitune.core.training import data as data_mod

    reasons: dict[str, str] = {}
    gpus = gpu.resolve_gpus(cfg, machine, hw.cuda)
    gpu.check_cuda_options(cfg, hw.cuda, hw.bf16, machine.gpus[0].name if hw.cuda else "",
                           flash_attn=engines.flash_attn, liger=engines.liger)
    if not hw.cuda and cfg.bf16 and not hw.bf16:
        raise ConfigError("bf16: true needs a CUDA GPU or a CPU with native bf16 (AVX512-BF16, AMX or Arm "
                          "BF16); this one would emulate it, slower than fp32. Remove bf16 or set it to false.")
    n = data.records
    if cfg.holdout is None:
        cfg = cfg.updated(holdout=presets.holdout_for(n, cfg.method))
        reasons["holdout"] = presets.holdout_reason(n, cfg.method)
    elif cfg.holdout >= n:
        raise ConfigError(f"holdout {cfg.holdout}: must leave records to train on; there are only {n} "
                          f"records (hold out fewer, or leave holdout unset).")
    if cfg.max_length is not None and cfg.method != "pretrain":
        data_mod.check_lengths(list(data.lengths), cfg.max_length)
    saves_unset = cfg.save_steps is None
    cfg = presets.apply(cfg, list(data.lengths), hw, model_params=model.params, reasons=reasons,
                        measured_lr=model.measured_lr)
    ranks, nodes = placement(cfg, gpus, hw.cuda, engines)
    world = ranks * nodes
    n_train = max(1, n - (cfg.holdout or 0))
    per_rank = gpu.records_per_rank(n_train, world)
    steps = presets.total_steps(cfg, per_rank)
    if world > 1 and saves_unset:  # each rank sees 1/world of the records: about 10 saves of the real schedule
        cfg = cfg.updated(save_steps=max(1, steps // 10))
        reasons["save_steps"] = f"about 10 checkpoints over {steps} steps ({world} ranks)"
    need = None
    if hw.cuda:
        size = shard_plan.Size(model.params or 0, model.vocab, model.layers or 32)
        need = shard_plan.need(cfg, size, world)
        fits = "" if need.fits(min(g.free_gib for g in machine.gpus)) else shard_plan.fits_sentence(
            cfg, size, [g.free_gib for g in machine.gpus], machine.ram_gib)
        gpu.choose_gpus(machine, gpus, need.gpu_gib, list(holders), fits=fits)
    if cfg.batch_size % cfg.micro_batch_size:
        raise ConfigError(f"micro_batch_size {cfg.micro_batch_size} must divide batch_size {cfg.batch_size} "
                          f"(the optimizer steps once per batch_size records); pick a divisor or leave it unset.")
    if model.max_position and cfg.max_length > model.max_position:
        raise ConfigError(f"max_length {cfg.max_length} exceeds what {cfg.base} supports ({model.max_position}); "
                          f"shorten the longest records or lower max_length.")
    if world > 1:
        reasons["distributed"] = _distributed_reason(cfg, ranks, nodes, hw.cuda)
    return Resolved(cfg=cfg, reasons=reasons, gpus=gpus, ranks=ranks, nodes=nodes, need=need, steps=steps,
                    n_train=n_train)


def placement(cfg: TrainConfig, gpus: int, cuda: bool, engines: Engines = Engines()) -> tuple[int, int]:
    """(ranks per node, nodes), with the distributed settings checked against each other and the hardware."""
    if cfg.accelerate_config:
        if cfg.distributed != "ddp" or cfg.nodes > 1 or cfg.cpu_ranks > 1:
            raise ConfigError("accelerate_config: your accelerate config file decides the ranks, nodes and sharding;"
                              " leave distributed, nodes and cpu_ranks unset with it (or drop accelerate_config "
                              "and let tuitune write the engine's config).")
        return max(1, gpus), 1
    if cfg.cpu_ranks > 1 and cuda:
        raise ConfigError(f"cpu_ranks: {cfg.cpu_ranks} is for runs on CPU, and this run uses CUDA GPUs; set gpus "
                          f"for several GPUs, or device: cpu to train on CPU ranks.")
    ranks = max(1, gpus) if cuda else cfg.cpu_ranks
    if cfg.offload and cfg.distributed == "ddp":
        raise ConfigError("offload: true needs distributed: fsdp, zero2 or zero3 (ddp keeps everything on each "
                          "GPU); set one of them or remove offload.")
    if cfg.offload and not cuda:
        raise ConfigError("offload: true moves GPU memory to CPU memory; this run is on CPU, where everything is "
                          "in CPU memory already. Remove offload.")
    if cfg.distributed in SHARDED and cfg.peft_kind == "qlora":
        raise ConfigError(f"distributed: {cfg.distributed} with a qlora (quantised) base is not supported here; "
                          f"use method lora with {cfg.distributed} (it shards the 16-bit base over the GPUs), or "
                          f"qlora with ddp.")
    if cfg.distributed in ("zero2", "zero3"):
        ds = engines.deepspeed if engines.deepspeed is not None else gpu.importable("deepspeed")
        if not ds:
            raise ConfigError(f"distributed: {cfg.distributed} needs DeepSpeed, which is not installed here; "
                              f"`make install` installs it (or pip install deepspeed), or use distributed: fsdp.")
    if cfg.nodes > 1 and not cfg.master_addr:
        raise ConfigError(f"nodes: {cfg.nodes} needs master_addr: the address of this machine (node 0) that the "
                          f"other nodes reach, e.g. --master-addr 10.0.0.5.")
    if cfg.distributed in SHARDED and ranks * cfg.nodes == 1 and not cuda:
        raise ConfigError(f"distributed: {cfg.distributed} on one CPU process shards nothing; set cpu_ranks: 2 or "
                          f"more to try it on CPU, or distributed: ddp.")
    return ranks, cfg.nodes


def _distributed_reason(cfg: TrainConfig, ranks: int, nodes: int, cuda: bool) -> str:
    what = {"ddp": "data parallel (every rank holds the whole model)",
            "fsdp": "FSDP2 full shard (weights, gradients, optimizer states split over the ranks)",
            "zero2": "DeepSpeed ZeRO-2 (gradients and optimizer states split)",
            "zero3": "DeepSpeed ZeRO-3 (weights, gradients and optimizer states split)"}[cfg.distributed]
    where = f"{ranks} {'GPU' if cuda else 'CPU rank'}{'s' if ranks > 1 else ''}"
    if nodes > 1:
        where += f" on each of {nodes} nodes, {ranks * nodes} ranks"
    off = ", offload to CPU memory" if cfg.offload else ""
    return f"{cfg.distributed}: {what}{off}; {where}{' (gloo)' if not cuda else ''}"
