"""GPU memory of a training run per distributed choice (ddp, fsdp, zero2, zero3, with or without offload).

A lower bound per GPU, like gpu.need_gib: weights, gradients and optimizer states of the trained weights, the fp32
logits of one pass, and the worker's CUDA overhead; activations come on top. What each choice divides by the number
of ranks (the engines' own documentation of ZeRO stages and FSDP full sharding):
- ddp: nothing; every rank holds everything.
- zero2: gradients and optimizer states (DeepSpeed ZeRO-2); offload moves the optimizer states to CPU memory.
- zero3 / fsdp: weights too (DeepSpeed ZeRO-3, PyTorch FSDP2 full shard); a rank gathers one transformer layer at a
  time (two with prefetch). Offload keeps weights, gradients and optimizer states in CPU memory.
Pure functions of the config, the model's size and the rank count, so made-up machines test them and the docs'
table (docs/distributed.md) is computed by them.
"""

from __future__ import annotations

from dataclasses import dataclass

from tuitune.core.training.config import PREFERENCE_METHODS, TrainConfig

TRAIN_OVERHEAD_GIB = 1.0  # CUDA context and allocator slack of one worker
# Bytes per parameter of a qlora base (config.quant): nf4 packs two weights per byte plus double-quantized absmax
# scales; int8 (LLM.int8()) is one byte per weight plus a float scale per row. A lower bound: layers bitsandbytes
# leaves unquantised (embeddings, the head) are counted at this rate too.
QUANT_BYTES = {"nf4": 0.56, "int8": 1.0}
GATHERED_LAYERS = 2  # layers a sharded rank holds whole at once: the one computing and the one prefetched


@dataclass(frozen=True)
class Size:
    """What the plan needs of a model: parameters, vocabulary, transformer layers."""
    params: int
    vocab: int
    layers: int = 32


@dataclass(frozen=True)
class Need:
    gpu_gib: float  # per GPU
    cpu_gib: float  # per rank, held in CPU memory by offload (0 without)

    def fits(self, free_gib: float) -> bool:
        return self.gpu_gib <= free_gib


def _bytes_per_param(cfg: TrainConfig, cuda: bool = True) -> tuple[float, float]:
    """(weights, gradients + optimizer states) bytes per parameter of the base model."""
    if cfg.peft_kind == "none":
        return 4.0, 12.0  # fp32 master weights; fp32 gradients, Adam m and v
    if cfg.peft_kind == "qlora":
        return QUANT_BYTES[cfg.quant], 0.0
    # a frozen base loads in 16 bits under mixed precision on CUDA (gpu.load_dtype); the adapter is tiny
    return (2.0 if cuda and (cfg.bf16 or cfg.fp16) else 4.0), 0.0


def logits_gib(cfg: TrainConfig, vocab: int) -> float:
    micro = cfg.batch_size if cfg.method in PREFERENCE_METHODS else (cfg.micro_batch_size or cfg.batch_size or 1)
    return micro * (cfg.max_length or 512) * vocab * 4 * (2 if cfg.method in PREFERENCE_METHODS else 1) / 2**30


def need(cfg: TrainConfig, size: Size, world: int = 1, distributed: str | None = None,
         offload: bool | None = None) -> Need:
    """Memory per GPU (and per rank in CPU memory) of cfg on `world` ranks with the given choice (default: the
    config's own)."""
    choice = distributed or cfg.distributed
    off = cfg.offload if offload is None else offload
    world = max(1, world)
    if world == 1 and choice != "zero3" and choice != "fsdp":
        choice = "ddp"  # one rank: zero2 divides nothing (fsdp/zero3 still offload if asked)
    w, go = _bytes_per_param(cfg)
    weights, states = size.params * w, size.params * go
    gathered = GATHERED_LAYERS * weights / max(1, size.layers)
    if choice == "ddp":
        gpu, cpu = weights + states, 0.0
    elif choice == "zero2":
        gpu, cpu = (weights + states / world, 0.0) if not off else (weights + states / 3 / world, states * 2 / 3 / world)
    else:  # fsdp, zero3: everything sharded, one or two layers gathered
        shard = (weights + states) / world
        gpu, cpu = (shard + gathered, 0.0) if not off else (gathered, shard)
    gib = TRAIN_OVERHEAD_GIB + gpu / 2**30 + logits_gib(cfg, size.vocab)
    return Need(gib, cpu / 2**30)


# What to try, in order, when a run does not fit: sharding before offload (offload is slow), fewer GPUs first.
CHOICES: tuple[tuple[str, bool], ...] = (("ddp", False), ("zero2", False), ("fsdp", False), ("zero3", False),
                                        ("zero2", True), ("fsdp", True), ("zero3", True))


def words(choice: str, offload: bool, gpus: int) -> str:
    off = " with offload" if offload else ""
    return f"{choice}{off} on {gpus} GPU{'s' if gpus > 1 else ''}"


def flags(choice: str, offload: bool, gpus: int) -> str:
    return f"--gpus {gpus} --distributed {choice}" + (" --offload" if offload else "")


def what_fits(cfg: TrainConfig, size: Size, free_gib: list[float], ram_gib: float = 0.0,
              max_gpus: int | None = None) -> tuple[str, bool, int, Need] | None:
    """The first choice that fits the `free_gib` of the best GPUs (and, with offload, 90% of the CPU memory
    `ram_gib` when known), or None: without offload first (fewest GPUs first, CHOICES order), then with offload.
    On one GPU only ddp and the offloading choices count (sharding over one rank divides nothing); a qlora base is
    not sharded (resolve.placement refuses it), so it gets ddp only."""
    best = sorted(free_gib, reverse=True)
    top = min(len(best), max_gpus or len(best))
    for offload in (False, True):
        for n in range(1, top + 1):
            for choice, off in CHOICES:
                if off != offload or (n == 1 and choice != "ddp" and not off) or (n == 1 and choice == "zero2"):
                    continue
                if cfg.peft_kind == "qlora" and choice != "ddp":
                    continue
                nd = need(cfg, size, n, choice, off)
                if nd.gpu_gib <= best[n - 1] and (not off or not ram_gib or nd.cpu_gib * n <= ram_gib * 0.9):
                    return choice, off, n, nd
    return None


def fits_sentence(cfg: TrainConfig, size: Size, free_gib: list[float], ram_gib: float = 0.0) -> str:
    """"this fits with fsdp on 2 GPUs (--gpus 2 --distributed fsdp): about 14.1 GiB per GPU", or ""."""
    found = what_fits(cfg, size, free_gib, ram_gib)
    if not found:
        return ""
    choice, off, n, nd = found
    cpu = f", {nd.cpu_gib * n:.0f} GiB of CPU memory" if off else ""
    return (f"this fits with {words(choice, off, n)} ({flags(choice, off, n)}): about {nd.gpu_gib:.1f} GiB per "
            f"GPU{cpu}")
