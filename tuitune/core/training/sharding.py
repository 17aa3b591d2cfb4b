"""The worker's side of sharded runs (distributed fsdp, zero2, zero3): the TrainingArguments that turn the engine
on, the process setup each engine needs before transformers/TRL are imported, and what actually ran.

The engines' config files are written at launch (engine_config.write: run/fsdp.json, run/deepspeed.json); a run
folder started by hand (torchrun on the worker) without them gets the same config built here, and rank 0 writes it
so the folder says what ran.

- fsdp: `fsdp=True` and the fsdp_config from run/fsdp.json; accelerate wraps the model with FSDP2 (`fully_shard`).
  On CPU ranks (gloo) accelerate has no FSDP: see `enable_cpu_fsdp`.
- zero2 / zero3: `deepspeed=run/deepspeed.json`. On CPU ranks DeepSpeed runs on its own CPU accelerator
  (DS_ACCELERATOR=cpu, gloo), which the Trainer only uses with `use_cpu=False`.
- ddp, or one rank: nothing (the `model` event says what ran).
- offload on CPU ranks: dropped (everything already lives in CPU memory; the engines' offload paths pin memory for
  a GPU), and said so in the notes.
"""

from __future__ import annotations

import json
import os

from tuitune.core.training import engine_config
from tuitune.core.training.config import SHARDED, TrainConfig
from tuitune.core.training.run_dir import RunDir

# DeepSpeed's CPU accelerator: the Trainer must not take the CPU path (use_cpu), and transformers refuses bf16/fp16
# without a GPU once use_cpu is off ("Your setup doesn't support bf16/gpu"): fp32 there. ddp_backend gloo: without
# it accelerate sees no backend for a CPU device with use_cpu off and counts one process (num_processes 1: unsharded
# data, and the Trainer's token-count gather fails with "invalid output tensor list").
CPU_DEEPSPEED = {"use_cpu": False, "bf16": False, "fp16": False, "ddp_backend": "gloo"}


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def active(cfg: TrainConfig, cuda: bool | None = None) -> bool:
    """The run shards: a sharded choice and more than one rank, or one GPU rank under torchrun (LOCAL_RANK set:
    the launcher starts sharded runs there so FSDP's/DeepSpeed's offload can serve one GPU). One CPU process: no."""
    if cfg.distributed not in SHARDED:
        return False
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    return world_size() > 1 or (bool(cuda) and "LOCAL_RANK" in os.environ)


def prepare(cfg: TrainConfig, cuda: bool) -> None:
    """Process setup before transformers, TRL or DeepSpeed are imported (TRL imports deepspeed at import when it
    is installed, and DeepSpeed picks its accelerator at its first import)."""
    if not active(cfg, cuda) or cuda:
        return
    if cfg.distributed in ("zero2", "zero3"):
        os.environ["DS_ACCELERATOR"] = "cpu"
        count_cpu_deepspeed_ranks()
    elif cfg.distributed == "fsdp":
        enable_cpu_fsdp()


def enable_cpu_fsdp() -> None:
    """Let accelerate run FSDP on CPU ranks (torchrun, gloo).

    Why this exists: accelerate (1.16) selects FSDP only for GPU-like distributed types (AcceleratorState.__init__
    turns MULTI_GPU/NPU/XPU/... into FSDP when an fsdp_plugin is given); with CPU ranks the type stays MULTI_CPU
    and the plugin is dropped, so `TrainingArguments(use_cpu=True, fsdp=...)` silently trains plain DDP (and with
    use_cpu=False transformers refuses: "Using fsdp only works in distributed training"). FSDP2 itself
    (`fully_shard`) runs on gloo. This wraps AcceleratorState.__init__: when the type is MULTI_CPU and an
    fsdp_plugin was given, it sets the type to FSDP and keeps the plugin, in AcceleratorState and in PartialState
    (each later AcceleratorState() copies PartialState's type back; without it the checkpoint save saw MULTI_CPU
    and handed safetensors the sharded DTensors). That is what accelerate itself does for GPUs. Applied only for
    fsdp on CPU with more than one rank; the GPU path uses accelerate's normal selection. Idempotent.
    """
    import accelerate.state as st

    if getattr(st.AcceleratorState.__init__, "_tuitune_cpu_fsdp", False):
        return
    original = st.AcceleratorState.__init__

    def init(self, *args, fsdp_plugin=None, **kwargs):
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == st.DistributedType.MULTI_CPU:
            self.distributed_type = st.DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin
            st.PartialState._shared_state["distributed_type"] = st.DistributedType.FSDP

    init._tuitune_cpu_fsdp = True
    st.AcceleratorState.__init__ = init


def count_cpu_deepspeed_ranks() -> None:
    """Make accelerate count DeepSpeed's CPU ranks.

    Why: with use_cpu off (which DeepSpeed needs) and no GPU, accelerate (1.16) finds no backend for the device,
    yet DeepSpeed has initialised the gloo process group; PartialState then says one process (rank 0 everywhere):
    every rank would read all the data, and the Trainer's token-count gather fails ("ProcessGroupGloo::allgather:
    invalid output tensor list"). This wraps PartialState.__init__: when torch.distributed is up with more than one
    rank and the state counts one, it takes the world size and ranks from the process group. Idempotent."""
    import accelerate.state as st

    if getattr(st.PartialState.__init__, "_tuitune_cpu_ds", False):
        return
    original = st.PartialState.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1 and self.num_processes == 1:
            shared = st.PartialState._shared_state
            shared["num_processes"] = dist.get_world_size()
            shared["process_index"] = dist.get_rank()
            shared["local_process_index"] = int(os.environ.get("LOCAL_RANK", dist.get_rank()))

    init._tuitune_cpu_ds = True
    st.PartialState.__init__ = init


def _engine_file(cfg: TrainConfig, run: RunDir, no_split_modules: list[str]) -> dict:
    """The engine config the launcher wrote, or (a run folder started by hand) the same built now."""
    path = run.fsdp_config if cfg.distributed == "fsdp" else run.deepspeed_config
    if path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: not a readable JSON engine config ({e}); delete it to have it rebuilt") from e
    if int(os.environ.get("RANK", "0")) == 0:
        engine_config.write(run, cfg, no_split_modules)
    if cfg.distributed == "fsdp":
        return engine_config.fsdp_config(cfg, no_split_modules)
    return engine_config.deepspeed_config(cfg)


def trainer_kwargs(cfg: TrainConfig, run: RunDir, cuda: bool, no_split_modules: list[str] | None = None) -> dict:
    """Extra TrainingArguments for the run's engine; {} for ddp or one rank. `no_split_modules`: the model's
    transformer layer classes, used only when run/fsdp.json is missing."""
    if not active(cfg, cuda):
        return {}
    body = _engine_file(cfg, run, list(no_split_modules or []))
    if cfg.distributed == "fsdp":
        if not cuda:
            body = {**body, "cpu_offload": False}
        out: dict = {"fsdp": True, "fsdp_config": body}
        if body.get("activation_checkpointing"):  # FSDP's own recomputation; the Trainer's would all-gather twice
            out["gradient_checkpointing"] = False
        return out
    if cuda:
        return {"deepspeed": str(run.deepspeed_config) if run.deepspeed_config.is_file() else body}
    if body.get("zero_optimization", {}).keys() & {"offload_optimizer", "offload_param"}:
        zero = {k: v for k, v in body["zero_optimization"].items() if not k.startswith("offload_")}
        body = {k: v for k, v in body.items() if k != "optimizer"}  # the Trainer's AdamW, not DeepSpeed's CPU Adam
        return {"deepspeed": {**body, "zero_optimization": zero}, **CPU_DEEPSPEED}
    return {"deepspeed": str(run.deepspeed_config) if run.deepspeed_config.is_file() else body, **CPU_DEEPSPEED}


def notes(cfg: TrainConfig, cuda: bool) -> list[str]:
    """What the run's distributed choice became on this machine, in words (for the model event)."""
    out = []
    if cfg.distributed in SHARDED and not active(cfg, cuda):
        out.append(f"distributed {cfg.distributed} has no effect with one rank: one process trains the whole model")
    if active(cfg, cuda) and not cuda:
        if cfg.offload:
            out.append("offload ignored on CPU ranks: weights and optimizer states already live in CPU memory")
        if cfg.distributed == "fsdp":
            out.append("FSDP2 (fully_shard) on CPU ranks over gloo, enabled by tuitune's accelerate shim "
                       "(sharding.enable_cpu_fsdp)")
        else:
            out.append("DeepSpeed on its CPU accelerator (DS_ACCELERATOR=cpu, gloo), fp32 (transformers refuses "
                       "bf16 there)")
    return out


def what_ran(trainer) -> dict:
    """The distribution the Trainer's accelerator actually set up (a silent fallback to DDP shows here):
    distributed (fsdp | zero2 | zero3 | ddp | none), world_size and the process group's backend."""
    from accelerate.utils import DistributedType

    acc = trainer.accelerator
    kind = acc.distributed_type
    if kind == DistributedType.FSDP:
        version = getattr(acc.state.fsdp_plugin, "fsdp_version", 1)
        ran = "fsdp" if version == 2 else "fsdp1"
    elif kind == DistributedType.DEEPSPEED:
        stage = (acc.state.deepspeed_plugin.deepspeed_config.get("zero_optimization") or {}).get("stage", 0)
        ran = f"zero{stage}"
    elif kind == DistributedType.NO:
        ran = "none"
    else:  # MULTI_CPU, MULTI_GPU, ...: plain data parallelism
        ran = "ddp"
    import torch.distributed as dist

    backend = dist.get_backend() if dist.is_available() and dist.is_initialized() else None
    return {"distributed": ran, "world_size": acc.num_processes, "backend": backend,
            "accelerate_type": str(kind.value if hasattr(kind, "value") else kind)}


def after_save() -> None:
    """Rank 0 alone after the final save: forget the run's DeepSpeed config, else the merge's from_pretrained would
    build the model under ZeRO-3's zero.Init and broadcast to ranks that have exited."""
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
