"""Does bf16 autocast make training faster on THIS CPU? Measured once per machine, then remembered.

A CPU flag that says "native bf16" (AVX512-BF16, AMX, Arm BF16) does not settle it. Measured with
bench/train_throughput.py on two such 2-core machines: bf16 autocast trained 3-18% faster than fp32 on an AMD EPYC
with AVX512-BF16, and 32% slower on an Intel Xeon with AVX512-BF16 (no AMX). So the preset times the work that
dominates a LoRA step on a small model -- the linear layers of a transformer block, forward and backward, with a
low-rank adapter beside them -- in fp32 and under bf16 autocast, and picks bf16 only when it is clearly faster.
It takes about a second; the answer is kept in a small JSON file keyed by CPU model, torch version and thread count.

Generation (the after-training verdict's greedy answers, evaluation/local.py) is another workload: a few rows at a
time through bf16 *weights*, no backward. `measure_decode` times that, cached under its own key; on this session's
Xeon with AMX it measured 2.1x on the matmuls and whole `generate` calls ran 1.6x faster in bf16.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

from tuitune.core import atomic

# bf16 must be at least this much faster on the probe: it also costs precision, and a full training step gains
# less than its matmuls alone (norms, softmax and the optimizer do not speed up).
MIN_SPEEDUP = 1.1
CACHE_FILE = "cpu_bf16.json"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_key() -> str:
    import torch

    return f"{cpu_name()} | torch {torch.__version__} | {torch.get_num_threads()} threads"


def measure(hidden: int = 768, intermediate: int = 2048, tokens: int = 256, rank: int = 16,
            repeats: int = 4) -> dict:
    """Seconds per forward+backward of a block's linear layers (fp32 weights, LoRA A/B trained), best of
    `repeats`, fp32 and bf16 autocast interleaved so that a busy machine slows both alike."""
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, tokens, hidden, generator=g)
    weights = [torch.randn(o, i, generator=g) * 0.02 for o, i in
               ((3 * hidden, hidden), (hidden, hidden), (2 * intermediate, hidden), (hidden, intermediate))]
    lora_a = torch.zeros(hidden, rank, requires_grad=True)
    lora_b = torch.zeros(rank, 3 * hidden, requires_grad=True)

    def step(bf16: bool) -> float:
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            qkv = torch.nn.functional.linear(x, weights[0]) + (x @ lora_a) @ lora_b
            h = torch.nn.functional.linear(qkv[..., :hidden], weights[1]) + x
            gate, up = torch.nn.functional.linear(h, weights[2]).chunk(2, dim=-1)
            out = torch.nn.functional.linear(torch.nn.functional.silu(gate) * up, weights[3]) + h
            loss = out.float().square().mean()
        loss.backward()
        return time.perf_counter() - t0

    return _best_of(step, repeats)


def measure_decode(hidden: int = 576, intermediate: int = 1536, rows: int = 8, layers: int = 4, calls: int = 10,
                   repeats: int = 4) -> dict:
    """Seconds for `calls` one-token steps of `rows` rows through a few blocks' linear layers, with fp32 weights and
    with bf16 weights (what greedy decoding does), best of `repeats`, interleaved."""
    import torch

    linear = torch.nn.functional.linear
    g = torch.Generator().manual_seed(0)
    shapes = ((3 * hidden, hidden), (hidden, hidden), (2 * intermediate, hidden), (hidden, intermediate))
    fp32 = [[torch.randn(o, i, generator=g) * 0.02 for o, i in shapes] for _ in range(layers)]
    x = torch.randn(rows, hidden, generator=g)
    weights = {False: (fp32, x), True: ([[w.to(torch.bfloat16) for w in ws] for ws in fp32], x.to(torch.bfloat16))}

    def run(bf16: bool) -> float:
        blocks, h0 = weights[bf16]
        t0 = time.perf_counter()
        with torch.no_grad():
            for _ in range(calls):
                h = h0
                for w in blocks:
                    a = linear(linear(h, w[0])[:, :hidden], w[1]) + h
                    gate, up = linear(a, w[2]).chunk(2, dim=-1)
                    h = linear(torch.nn.functional.silu(gate) * up, w[3]) + a
        return time.perf_counter() - t0

    return _best_of(run, repeats)


def _best_of(timed: Callable[[bool], float], repeats: int) -> dict:
    """Best seconds of `timed(bf16)` over `repeats`, fp32 and bf16 interleaved (a busy machine slows both alike),
    after one warm-up call each (first calls pick kernels and allocate)."""
    best = {False: float("inf"), True: float("inf")}
    for bf16 in (False, True):
        timed(bf16)
    for _ in range(repeats):
        for bf16 in (False, True):
            best[bf16] = min(best[bf16], timed(bf16))
    return {"fp32_s": best[False], "bf16_s": best[True], "speedup": best[False] / best[True]}


def bf16_decode_pays(cache_dir: Path | None = None, measure_fn: Callable[[], dict] = measure_decode) -> bool:
    """True when greedy decoding with bf16 weights is at least MIN_SPEEDUP faster than fp32 on this CPU."""
    return bf16_pays(cache_dir, measure_fn, key=machine_key() + " | decode")


def bf16_pays(cache_dir: Path | None = None, measure_fn: Callable[[], dict] = measure, key: str | None = None) -> bool:
    """True when bf16 autocast is at least MIN_SPEEDUP faster than fp32 on this CPU (measured, cached)."""
    key = key or machine_key()
    path = Path(cache_dir) / CACHE_FILE if cache_dir else None
    cache: dict = {}
    if path and path.exists():
        try:
            cache = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cache = {}  # unreadable cache: measure again and rewrite it
    if not isinstance(cache.get(key), dict) or "speedup" not in cache[key]:
        cache[key] = measure_fn()
        if path:
            try:
                atomic.write_json(path, cache)
            except OSError:
                pass  # a read-only home only costs a second per launch
    return cache[key]["speedup"] >= MIN_SPEEDUP
