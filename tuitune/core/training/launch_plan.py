"""The command each node runs for a training run, through the engines' own launchers.

- one process (CPU, or one GPU with ddp): `python -m tuitune.core.training.worker RUN`;
- several ranks on one node: `python -m torch.distributed.run --standalone --nproc_per_node=N -m ... RUN`;
- several nodes: torchrun with a static rendezvous on node 0 (`--nnodes`, `--node_rank`, `--master_addr`,
  `--master_port`), one command per node; the run folder must be at the same path on every node (a shared
  filesystem, or a copy of config.yaml and data.jsonl);
- the user's own accelerate config (`accelerate_config`): `python -m accelerate.commands.launch --config_file FILE
  -m tuitune.core.training.worker RUN` (accelerate reads ranks, nodes and sharding from the file).
The sharding itself (fsdp, zero2, zero3) is not in the command: the worker hands the engine's config file from the
run folder (engine_config.py) to transformers' Trainer, which sets up FSDP2 or DeepSpeed through accelerate.
`launch.json` in the run folder records every node's command.
"""

from __future__ import annotations

import sys
from pathlib import Path

WORKER = "tuitune.core.training.worker"


def commands(run_path: Path, *, ranks: int = 1, nodes: int = 1, master_addr: str = "", master_port: int = 29500,
             accelerate_config: str = "", python: str | None = None, sharded: bool = False) -> list[list[str]]:
    """One command per node (node rank = index). `sharded` (fsdp/zero2/zero3): torchrun even for one rank, as
    accelerate sets the engines up only in a distributed environment (a sharded run on one GPU: offload)."""
    py = python or sys.executable
    worker = ["-m", WORKER, str(Path(run_path).resolve())]
    if accelerate_config:
        return [[py, "-m", "accelerate.commands.launch", "--config_file", str(Path(accelerate_config).resolve()),
                 *worker]]
    if nodes <= 1:
        if ranks <= 1 and not sharded:
            return [[py, *worker]]
        return [[py, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}", *worker]]
    return [[py, "-m", "torch.distributed.run", f"--nnodes={nodes}", f"--node_rank={r}",
             f"--nproc_per_node={ranks}", f"--master_addr={master_addr}", f"--master_port={master_port}", *worker]
            for r in range(nodes)]


def record(ranks: int, nodes: int, distributed: str, cmds: list[list[str]], master_addr: str = "",
           master_port: int = 29500) -> dict:
    """What launch.json holds: world size, rendezvous and each node's command (as a list and as one line)."""
    import shlex

    return {"world_size": ranks * nodes, "ranks_per_node": ranks, "nodes": nodes, "distributed": distributed,
            "rendezvous": f"{master_addr}:{master_port}" if nodes > 1 else "standalone",
            "node_commands": [{"node_rank": r, "command": c, "line": shlex.join(c)} for r, c in enumerate(cmds)]}
