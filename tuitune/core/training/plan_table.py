"""The table of docs/distributed.md: which distributed choice fits a model size and method on made-up machines,
computed by the same plan (shard_plan.what_fits) that refuses a run and names the choice that would fit.

`python -m tuitune.core.training.plan_table` prints it as Markdown; a unit test checks the docs hold this output.
"""

from __future__ import annotations

from tuitune.core.training.config import TrainConfig
from tuitune.core.training.shard_plan import Size, flags, what_fits

# Sizes of real model configs (parameters, vocabulary, layers): Qwen2.5 0.5B/7B/14B Instruct, Llama 3.x 70B.
MODELS: dict[str, Size] = {
    "0.5B": Size(494_000_000, 151_936, 24),
    "7B": Size(7_616_000_000, 152_064, 28),
    "14B": Size(14_770_000_000, 152_064, 48),
    "70B": Size(70_550_000_000, 128_256, 80),
}
# Made-up machines: GPU count x memory (GiB); each GPU counted with 1 GiB already in use.
MACHINES: dict[str, list[float]] = {"1x24 GB": [23.0], "2x24 GB": [23.0] * 2, "8x80 GB": [79.0] * 8}
RAM_GIB = {"1x24 GB": 64.0, "2x24 GB": 128.0, "8x80 GB": 1024.0}
METHODS = ("lora", "qlora", "full")
# The run the table plans for: bf16 on the GPU, 1024-token records, one record per forward pass.
RUN = {"bf16": True, "max_length": 1024, "batch_size": 8, "micro_batch_size": 1}


def cell(method: str, size: Size, machine: str) -> str:
    found = what_fits(TrainConfig(method=method, **RUN), size, MACHINES[machine], RAM_GIB[machine])
    if not found:
        return "does not fit"
    choice, off, n, need = found
    return f"`{flags(choice, off, n)}` ({need.gpu_gib:.0f} GiB/GPU)"


def markdown() -> str:
    head = "| model | method | " + " | ".join(MACHINES) + " |"
    rows = [head, "|" + "---|" * (len(MACHINES) + 2)]
    for name, size in MODELS.items():
        for method in METHODS:
            rows.append(f"| {name} | {method} | " + " | ".join(cell(method, size, m) for m in MACHINES) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown())
