"""GPU memory for vLLM servers: which GPU(s) each server gets, its share of their memory, and a context that fits.

vLLM's CUDA build takes `--gpu-memory-utilization` x the GPU's TOTAL memory (0.92 by default) for weights,
activations and KV cache, and refuses to start when less than that is free. Without a plan the second server
(teacher + chat, base + full fine-tune) fails, and a live server leaves nothing for training. So, from the free
memory of each GPU (the machine description) and what this app already runs:
- a server's minimum is its weights (split by tensor parallelism) + OVERHEAD_GIB + the KV cache of one
  sequence of MIN_LEN tokens; it goes on the GPU with the most room, or, when no single GPU holds it, over 2, 4 or
  8 GPUs (`--tensor-parallel-size`, heads must divide);
- it asks for no more than the KV cache of KV_SEQS full-length sequences (context capped at LEN_CAP), so a small
  model does not take a whole GPU: the rest stays free for training and other servers;
- servers planned together on one GPU share what is free in proportion to what they ask for;
- `--max-model-len` is what fits in the share; a plan that cannot fit raises with what needs how much, what is
  free and what holds the memory.
Pure: a function of a `Machine`, the models' `ModelSize`s and the running `Holder`s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tuitune.core.hardware import Machine, ModelSize
from tuitune.core.resources import Holder
from tuitune.core.serving.errors import VLLMUnavailable

OVERHEAD_GIB = 1.5  # CUDA context, activations at the profile run, CUDA graphs
MARGIN_FRACTION = 0.03  # of each GPU's total memory left unclaimed (other programs, fragmentation)
MIN_MARGIN_GIB = 0.5
LEN_CAP = 32768  # longest context a server is planned for when the model allows more
MIN_LEN = 2048  # shortest context worth serving (or the model's own maximum if shorter)
KV_SEQS = 8  # full-length sequences whose KV cache a server asks for at most
LEN_STEP = 256


class GPUPlanError(VLLMUnavailable):
    """The servers do not fit the GPUs' free memory; the message says what needs how much and what is free."""


@dataclass(frozen=True)
class ServerNeed:
    name: str
    size: ModelSize
    adapters_gib: float = 0.0


@dataclass(frozen=True)
class GPUShare:
    name: str
    gpus: tuple[int, ...]
    tensor_parallel: int
    utilization: float  # --gpu-memory-utilization (fraction of each of its GPUs' total memory)
    max_model_len: int
    gib_per_gpu: float

    def env(self) -> dict[str, str]:
        return {"CUDA_VISIBLE_DEVICES": ",".join(map(str, self.gpus))}

    def args(self) -> list[str]:
        out = ["--gpu-memory-utilization", f"{self.utilization:.2f}", "--max-model-len", str(self.max_model_len)]
        if self.tensor_parallel > 1:
            out += ["--tensor-parallel-size", str(self.tensor_parallel)]
        return out


def margin(total_gib: float) -> float:
    return max(MIN_MARGIN_GIB, MARGIN_FRACTION * total_gib)


def _lens(size: ModelSize) -> tuple[int, int]:
    top = min(size.max_position, LEN_CAP)
    return min(MIN_LEN, top), top


def need_gib(need: ServerNeed, tp: int, tokens: int) -> float:
    """GPU memory per GPU for weights / tp, overhead and the KV cache of `tokens` tokens (split over tp)."""
    kv = tokens * need.size.kv_bytes_per_token() / 2**30
    return (need.size.weights_gib + need.adapters_gib) / tp + OVERHEAD_GIB + kv / tp


def _tp_options(size: ModelSize, n_gpus: int) -> list[int]:
    # vLLM splits attention heads evenly; KV heads are split, or replicated when fewer than tp.
    return [tp for tp in (1, 2, 4, 8) if tp <= n_gpus and size.heads % tp == 0 and
            (size.kv_heads % tp == 0 or tp % size.kv_heads == 0)]


def _holding(holders: list[Holder], gpus: tuple[int, ...] | None = None) -> str:
    held = [h for h in holders if h.gpu_gib and (gpus is None or set(h.gpus) & set(gpus))]
    if not held:
        return ""
    return " Held by this app: " + "; ".join(h.describe() for h in held) + "."


def plan_gpu(machine: Machine, needs: list[ServerNeed], holders: list[Holder] | None = None,
             reclaim: dict[int, float] | None = None) -> list[GPUShare]:
    """A GPUShare per need (same order). `reclaim`: GPU index -> GiB that servers this plan replaces free up."""
    holders = holders or []
    if not machine.gpus:
        raise GPUPlanError("no CUDA GPU in the machine description; the CPU plan applies")
    room = {g.index: g.free_gib + (reclaim or {}).get(g.index, 0.0) - margin(g.total_gib) for g in machine.gpus}
    total = {g.index: g.total_gib for g in machine.gpus}
    # Largest first, so the big model gets the roomiest GPU.
    order = sorted(range(len(needs)), key=lambda i: -needs[i].size.weights_gib)
    chosen: dict[int, tuple[tuple[int, ...], int]] = {}
    for i in order:
        need = needs[i]
        lo, _ = _lens(need.size)
        for tp in _tp_options(need.size, len(machine.gpus)):
            best = sorted(room, key=lambda k: (-room[k], k))[:tp]
            if all(room[k] >= need_gib(need, tp, lo) for k in best):
                for k in best:
                    room[k] -= need_gib(need, tp, lo)
                chosen[i] = (tuple(sorted(best)), tp)
                break
        else:
            free = ", ".join(f"GPU {g.index} ({g.name}): {g.free_gib:.1f} of {g.total_gib:.0f} GiB free"
                             for g in machine.gpus)
            one = need_gib(need, 1, lo)
            raise GPUPlanError(
                f"{need.name} needs about {one:.1f} GiB of GPU memory (weights {need.size.weights_gib:.1f} GiB + "
                f"{OVERHEAD_GIB} GiB overhead + KV cache for {lo} tokens), also when split over the GPUs that "
                f"tensor parallelism allows; {free}.{_holding(holders)} Stop what holds the memory (servers: "
                f"quit the chat/teacher; training: `tuitune runs stop ID`), serve a smaller or quantized model, "
                f"or serve fewer models at once.")
    placed = [(needs[i], *chosen[i]) for i in range(len(needs))]
    # What is left on each GPU after every minimum goes to the servers there, in proportion to their wish.
    extra = {g.index: max(0.0, room[g.index]) for g in machine.gpus}
    wish = {}
    for need, gpus, tp in placed:
        lo, hi = _lens(need.size)
        wish[need.name] = need_gib(need, tp, KV_SEQS * hi) - need_gib(need, tp, lo)
    wanted = {k: sum(wish[n.name] for n, g, _ in placed if k in g) for k in extra}
    out = []
    for need, gpus, tp in placed:
        lo, hi = _lens(need.size)
        part = min((extra[k] * wish[need.name] / wanted[k]) if wanted[k] else 0.0 for k in gpus)
        gib = need_gib(need, tp, lo) + min(part, wish[need.name])
        kv_gib = (gib - (need.size.weights_gib + need.adapters_gib) / tp - OVERHEAD_GIB) * tp
        fits = int(kv_gib * 2**30 // need.size.kv_bytes_per_token())
        length = max(lo, min(hi, fits // LEN_STEP * LEN_STEP))
        util = math.ceil(gib / min(total[k] for k in gpus) * 100) / 100  # the margin covers the rounding
        out.append(GPUShare(need.name, gpus, tp, max(0.01, util), length, round(gib, 2)))
    return out
