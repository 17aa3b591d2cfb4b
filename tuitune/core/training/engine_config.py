"""The sharding engines' own config files for a run: run/fsdp.json (transformers' `TrainingArguments.fsdp_config`)
or run/deepspeed.json (a DeepSpeed config), written at launch (jobs.launch) and read by the worker (sharding.py).

Pure: no torch, transformers or deepspeed import. ddp needs no file.

- fsdp: FSDP2 (`fully_shard`), every transformer layer its own shard unit (the model's `_no_split_modules`, e.g.
  LlamaDecoderLayer), weights resharded after the forward pass (full shard), FULL_STATE_DICT: each checkpoint holds
  a whole-model file that resumes and the final save gathers the whole model (or adapter) on rank 0.
  `offload`: parameters and gradients in CPU memory between uses (FSDP2's CPUOffloadPolicy).
- zero2 / zero3: DeepSpeed ZeRO stage 2 or 3; "auto" wherever the Trainer fills the value from the run's own
  TrainingArguments (micro batch, accumulation, clipping, bf16/fp16, bucket sizes). No `train_batch_size`: the
  Trainer's fill would count one rank on DeepSpeed's CPU accelerator and DeepSpeed's batch check would fail.
  zero3 gathers the 16-bit weights on save (a whole model file beside the ZeRO shards). `offload`: optimizer states
  (and with zero3 the weights) on the CPU, with DeepSpeed's own CPU Adam (configured here, built by DeepSpeed).
"""

from __future__ import annotations

import json
from pathlib import Path

from tuitune.core.training.config import TrainConfig
from tuitune.core.training.run_dir import RunDir


def fsdp_config(cfg: TrainConfig, no_split_modules: list[str]) -> dict:
    """transformers' fsdp_config (pass with `fsdp=True`) for FSDP2 full sharding of `cfg`'s model."""
    out: dict = {
        "version": 2,
        "reshard_after_forward": True,  # full shard: a layer's weights are gathered only while it runs
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "state_dict_type": "FULL_STATE_DICT",  # checkpoints resume; the final save gathers the whole model
        "cpu_offload": bool(cfg.offload),
        "activation_checkpointing": bool(cfg.gradient_checkpointing),  # FSDP's own: no extra all-gather
    }
    if no_split_modules:
        out["transformer_layer_cls_to_wrap"] = sorted(set(no_split_modules))
    return out


def deepspeed_config(cfg: TrainConfig) -> dict:
    """A DeepSpeed config for ZeRO stage 2 (cfg.distributed zero2) or 3 (zero3), "auto" where the Trainer fills."""
    if cfg.distributed not in ("zero2", "zero3"):
        raise ValueError(f"deepspeed_config: distributed is {cfg.distributed!r}, not zero2 or zero3")
    stage = 3 if cfg.distributed == "zero3" else 2
    zero: dict = {"stage": stage, "overlap_comm": False, "contiguous_gradients": True,
                  "reduce_bucket_size": "auto"}
    if stage == 3:
        zero.update({"stage3_prefetch_bucket_size": "auto", "stage3_param_persistence_threshold": "auto",
                     "stage3_gather_16bit_weights_on_model_save": True})
    out: dict = {
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "zero_optimization": zero,
        "steps_per_print": 10**9,  # the worker's own step events report progress
        "wall_clock_breakdown": False,
    }
    if cfg.offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
        # Offloaded states are updated by DeepSpeed's CPU Adam; the Trainer fills its hyper-parameters.
        out["optimizer"] = {"type": "AdamW", "params": {"lr": "auto", "betas": "auto", "eps": "auto",
                                                        "weight_decay": "auto"}}
    return out


def write(run: RunDir, cfg: TrainConfig, no_split_modules: list[str]) -> list[Path]:
    """Write the run's engine config (run/fsdp.json or run/deepspeed.json) atomically; [] for ddp.
    `no_split_modules`: the base model's `_no_split_modules` (its transformer layer classes)."""
    from tuitune.core import atomic

    if cfg.distributed == "fsdp":
        path, body = run.fsdp_config, fsdp_config(cfg, no_split_modules)
    elif cfg.distributed in ("zero2", "zero3"):
        path, body = run.deepspeed_config, deepspeed_config(cfg)
    else:
        return []
    atomic.write_text(path, json.dumps(body, indent=2) + "\n")
    return [path]
