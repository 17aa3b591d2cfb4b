"""Training on GPUs, decided before any run folder exists: precision, GPU count, launcher, memory, batch accounting.

Pure functions of the config, the machine description (core/hardware.py) and the running holders
(core/resources.py), so made-up machines test them. Rules:
- `fp16: true` on a bf16 GPU turns the preset's bf16 off (never both); `bf16: true` on a GPU without bf16 (T4,
  V100) is refused; unset there, training runs in fp16 mixed precision.
- padding_free/packing need flash-attention kernels (`flash_attn` importable, CUDA), else refused;
  use_liger_kernel needs CUDA and `liger_kernel`.
- Full fine-tuning and preference methods without an adapter keep fp32 master weights (mixed precision): a
  5e-7 learning rate rounds away in pure bf16 weights. Only a frozen base (adapters) is loaded in 16 bits.
- `gpus` (1 by default, N or all): more than one starts torchrun, one worker per GPU (DDP, or the `distributed`
  sharding); the effective batch is batch_size x ranks x grad_accum and the schedule counts it (each rank sees
  1/ranks of the records).
- A lower bound of the GPU memory a run needs (weights, gradients and optimizer states, logits of one pass; a qlora
  base at 0.56 bytes per parameter in nf4, 1 in int8) is compared with the free memory of the GPUs it would use; a run that cannot fit is refused with what holds it.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

from tuitune.core.hardware import Machine
from tuitune.core.resources import Holder
from tuitune.core.training.config import ConfigError, TrainConfig
from tuitune.core.training.shard_plan import QUANT_BYTES, TRAIN_OVERHEAD_GIB  # noqa: F401  (defined there)

QUANT_WORDS = {"nf4": "4-bit nf4", "int8": "8-bit int8"}


def importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def resolve_gpus(cfg: TrainConfig, machine: Machine, cuda: bool) -> int:
    """How many GPUs the run uses: 1 by default, N, or all of them; 0 on CPU."""
    if not cuda:
        if cfg.gpus not in (1, "all"):
            raise ConfigError(f"gpus: {cfg.gpus} needs CUDA GPUs and none is visible; leave gpus at 1 on CPU.")
        return 0
    n = len(machine.gpus) if cfg.gpus == "all" else int(cfg.gpus)
    if n > len(machine.gpus):
        raise ConfigError(f"gpus: {n} asked for, this machine has {len(machine.gpus)} GPU(s); use gpus: all or "
                          f"a number up to {len(machine.gpus)}.")
    return n


def check_cuda_options(cfg: TrainConfig, cuda: bool, bf16_gpu: bool, gpu_name: str = "this GPU", *,
                       flash_attn: bool | None = None, liger: bool | None = None) -> None:
    """Refuse what cannot run, before any folder exists (flash_attn/liger: importable; None = look)."""
    flash_attn = importable("flash_attn") if flash_attn is None else flash_attn
    liger = importable("liger_kernel") if liger is None else liger
    if not cuda:
        for name in ("fp16", "padding_free", "packing", "use_liger_kernel"):
            if getattr(cfg, name):
                raise ConfigError(f"{name}: true needs a CUDA GPU and none is visible (on CPU, train without "
                                  f"padding, one record per pass). Remove {name} from the config or set it to false.")
        return
    if cfg.fp16 and cfg.bf16:
        raise ConfigError("fp16 and bf16 are both true; pick one mixed precision (bf16 where the GPU has it).")
    if cfg.bf16 and not bf16_gpu:
        raise ConfigError(f"bf16: true, but {gpu_name} has no bf16 (compute capability below 8.0, e.g. T4, V100); "
                          f"set fp16: true, or leave both unset (fp16 mixed precision is chosen there).")
    for name in ("padding_free", "packing"):
        if getattr(cfg, name) and not flash_attn:
            raise ConfigError(f"{name}: true concatenates records into one row, which is only correct with "
                              f"flash-attention kernels, and flash-attn is not installed here; install flash-attn "
                              f"for this torch/CUDA, or set {name} to false.")
    if cfg.use_liger_kernel and not liger:
        raise ConfigError("use_liger_kernel: true, but liger-kernel is not installed; install it (pip install "
                          "liger-kernel) or set use_liger_kernel to false.")


def load_dtype(cfg: TrainConfig, cuda: bool) -> str:
    """The dtype the base model is loaded in: 16 bits only for a frozen base under an adapter on CUDA;
    trained weights (full, preference without adapter) stay fp32 masters under mixed precision."""
    if not cuda or cfg.peft_kind == "none":
        return "float32"
    if cfg.bf16:
        return "bfloat16"
    if cfg.fp16:
        return "float16"
    return "float32"


def quant_words(cfg: TrainConfig) -> str:
    """The qlora base's quantisation in words ("8-bit int8 base (bitsandbytes)"); "" for unquantised methods."""
    return f"{QUANT_WORDS[cfg.quant]} base (bitsandbytes)" if cfg.peft_kind == "qlora" else ""


def precision(cfg: TrainConfig, cuda: bool) -> str:
    mixed = "fp16" if cfg.fp16 else "bf16" if cfg.bf16 else ""
    if cfg.peft_kind == "qlora":
        return f"{mixed + ' mixed' if mixed else 'fp32'}, {QUANT_WORDS[cfg.quant]} frozen base"
    if not mixed:
        return "fp32"
    if not cuda:
        return "bf16 autocast, fp32 weights"
    if cfg.peft_kind == "none":
        return f"{mixed} mixed, fp32 master weights"
    return f"{mixed} mixed, {mixed} frozen base"


def effective_batch(cfg: TrainConfig, gpus: int) -> int:
    return (cfg.batch_size or 1) * cfg.grad_accum * max(1, gpus)


def records_per_rank(n_train: int, gpus: int) -> int:
    """Records one rank sees per epoch (DDP shards the data): the schedule counts steps from this."""
    return max(1, math.ceil(n_train / max(1, gpus)))


def launcher(run_path: Path, gpus: int) -> list[str]:
    """One process on CPU or one GPU; torchrun with one worker per GPU when gpus > 1 (launch_plan.py)."""
    from tuitune.core.training.launch_plan import commands

    return commands(run_path, ranks=max(1, gpus))[0]


def need_gib(cfg: TrainConfig, params: int, vocab: int, world: int = 1, layers: int = 32) -> float:
    """A lower bound of one worker's GPU memory: weights (+ gradients and Adam states of trained weights), divided
    as cfg.distributed divides them over `world` ranks (shard_plan.py), and the fp32 logits of one pass.
    Activations come on top; a run refused by this bound cannot run."""
    from tuitune.core.training.shard_plan import Size, need

    return need(cfg, Size(params, vocab, layers), world).gpu_gib


def choose_gpus(machine: Machine, n: int, need: float, holders: list[Holder], fits: str = "") -> tuple[int, ...]:
    """The n GPUs with the most free memory; refused when one of them has less free than the run needs. `fits`:
    the distributed choice that would fit (shard_plan.fits_sentence), said first in the refusal."""
    best = sorted(machine.gpus, key=lambda g: (-g.free_gib, g.index))[:n]
    short = [g for g in best if g.free_gib < need]
    if short:
        held = [h for h in holders if h.gpu_gib]
        what = ("; held by this app: " + "; ".join(h.describe() for h in held) +
                ". Stop those servers (quit chat, or the `tuitune serve` holding them) or wait for that run, "
                "then train") if held else ". Free GPU memory (`nvidia-smi` shows what holds it)"
        gpu = short[0]
        lead = f"; {fits}" if fits else ""
        raise ConfigError(f"training needs at least {need:.1f} GiB of GPU memory per GPU ({cfg_hint(need)}); "
                          f"{gpu.label} has {gpu.free_gib:.1f} of {gpu.total_gib:.0f} GiB free{lead}{what}, or use "
                          f"method qlora (quant nf4 needs the least), a smaller base model or lower max_length.")
    return tuple(sorted(g.index for g in best))


def cfg_hint(need: float) -> str:
    return "weights, gradients, optimizer states and one pass's logits; activations come on top"
