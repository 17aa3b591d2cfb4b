"""The training configuration: one plain YAML file per run (`runs/<id>/config.yaml`), every field documented.

An unset (null) field means "decide for me": presets (presets.py) fill those from the data and the hardware at
launch, and the filled-in values are what the run folder records, so the file alone re-runs the same training.
Every field states its range in its help and is checked here, before any run folder exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tuitune.core.models import EMBEDDED_NAME

Method = Literal["lora", "qlora", "dora", "full", "dpo", "kto", "orpo", "pretrain"]
METHODS: tuple[str, ...] = get_args(Method)  # the one list of training methods (CLI, form, presets read it)
PREFERENCE_METHODS: tuple[str, ...] = ("dpo", "kto", "orpo")
# Methods that train a PEFT adapter (the preference and pretrain methods use `adapter` below).
ADAPTER_METHODS: tuple[str, ...] = ("lora", "qlora", "dora")
# How method qlora (or adapter qlora) quantises the frozen base with bitsandbytes (quant.py builds the config).
Quant = Literal["nf4", "int8"]
QUANTS: tuple[str, ...] = get_args(Quant)
# How several ranks (GPUs, CPU processes, nodes) share a run: plain data parallelism, or the engines' sharding.
Distributed = Literal["ddp", "fsdp", "zero2", "zero3"]
DISTRIBUTED: tuple[str, ...] = get_args(Distributed)
SHARDED: tuple[str, ...] = ("fsdp", "zero2", "zero3")
Scheduler = Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                    "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "warmup_stable_decay"]
# Fields filled in at launch, not chosen by the user (the CLI and the form leave them out).
DERIVED: tuple[str, ...] = ("base_path", "base_id", "base_revision")


class ConfigError(Exception):
    """A training configuration that cannot run, with what to change."""


class TrainConfig(BaseModel):
    """Everything a training run needs. Saved as runs/<id>/config.yaml; any field can be edited there.
    An empty (unset) field is decided at launch by the presets, from the data and the hardware."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    method: Method = Field("lora", description="lora | qlora (LoRA on a 4- or 8-bit base, see quant) | dora | "
                                               "full | dpo | kto | orpo | pretrain (continued pre-training on raw "
                                               "text files).")
    adapter: Literal["lora", "qlora", "dora", "none"] = Field(
        "lora", description="For dpo/kto/orpo/pretrain: train a LoRA/QLoRA/DoRA adapter or all weights (none).")
    quant: Quant = Field("nf4", description="How qlora (method or adapter) quantises the frozen base with "
                                            "bitsandbytes: nf4 (4-bit NormalFloat, double quantization, about "
                                            "0.56 bytes per parameter) or int8 (8-bit LLM.int8(), about 1 byte: "
                                            "twice nf4's memory, closer to the unquantised base). Other methods "
                                            "ignore it.")
    base: str = Field(EMBEDDED_NAME, min_length=1,
                      description="Base model: a registered name, a model folder, or a Hub ID ORG/NAME[@REVISION] "
                                  "(from the local cache, else downloaded).")
    base_path: str = Field("", description="Resolved folder of the base model (filled at launch).")
    base_id: str = Field("", description="The Hub ID the base resolved to, ORG/NAME (filled at launch; empty for a "
                                         "local folder).")
    base_revision: str = Field("", description="The commit of the Hub snapshot the base resolved to (filled at "
                                               "launch; pin it with base: ORG/NAME@COMMIT to repeat the run).")
    data: str = Field("", description="Training data file (JSON/JSONL export); empty: the project's seeds and "
                                      "accepted samples, snapshotted into the run folder at launch.")
    text_files: list[str] = Field(default_factory=list, description="Raw .txt/.md files for method pretrain.")
    holdout: int | None = Field(None, ge=0, description="Records kept out of training for eval loss, early "
                                                        "stopping, the stop check and the verdict, >= 0 and fewer "
                                                        "than the records (unset: ~10% from 40 records on, at "
                                                        "least 8 and at most 200; 3 with 12-39 records; else 0). "
                                                        "Drawn as whole duplicate groups: no exact or near "
                                                        "duplicate of a training record is held out.")
    epochs: float | None = Field(None, gt=0, le=1000, description="Passes over the data, > 0 (unset: preset from "
                                                                  "dataset size).")
    max_steps: int = Field(-1, ge=-1, description="Stop after this many optimizer steps, >= 1 (-1: run all "
                                                  "epochs).")
    learning_rate: float | None = Field(None, gt=0, le=1, description="Peak learning rate, in (0, 1] (unset: "
                                                                      "preset by method).")
    lr_scheduler: Scheduler = Field("cosine", description="Learning-rate schedule (transformers' names).")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Fraction of steps for linear warm-up, in [0, 1).")
    weight_decay: float = Field(0.0, ge=0, le=1, description="AdamW weight decay, in [0, 1].")
    batch_size: int | None = Field(None, ge=1, description="Records per optimizer step on each device, >= 1 "
                                                           "(unset: preset from lengths).")
    grad_accum: int = Field(1, ge=1, description="Gradient accumulation steps, >= 1 (effective batch = "
                                                 "batch_size x this).")
    micro_batch_size: int | None = Field(
        None, ge=1, description="Records per forward pass, >= 1 and a divisor of batch_size; gradients add up "
                                "over batch_size / micro_batch_size passes, so the optimizer sees the same batch "
                                "(unset on CPU: as many records as fit about 350 tokens, often 1, as padding and "
                                "attention masks cost more than batching gains there; batch_size on CUDA). "
                                "Lower it when memory runs out. SFT only.")
    max_length: int | None = Field(None, ge=16, description="Max tokens per record, >= 16 (unset: longest record, "
                                                            "rounded up). A longer record is an error, not "
                                                            "silently truncated.")
    lora_r: int | None = Field(None, ge=1, le=1024, description="LoRA rank, 1-1024 (unset: preset from dataset "
                                                                "size).")
    lora_alpha: int | None = Field(None, ge=1, description="LoRA alpha, >= 1 (unset: 2 x rank).")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout, in [0, 1).")
    target_modules: str | list[str] = Field("all-linear", description="Modules that get adapters: all-linear, "
                                                                      "or module names separated by commas.")
    beta: float = Field(0.1, gt=0, description="DPO/KTO/ORPO beta, > 0.")
    seed: int = Field(42, ge=0, description="Random seed, >= 0.")
    save_steps: int | None = Field(None, ge=1, description="Checkpoint every N steps, >= 1 (unset: about 10 per "
                                                           "run).")
    logging_steps: int = Field(1, ge=1, description="Write a step event every N steps, >= 1.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present, else CPU.")
    bf16: bool | None = Field(None, description="bf16 mixed precision (unset: on with a bf16 CUDA GPU; on a CPU "
                                                "with native bf16 (AVX512-BF16/AMX, Arm BF16) only where a "
                                                "one-second probe measured it faster than fp32 (matmuls in bf16, "
                                                "weights stay fp32); off on other CPUs, which only emulate it).")
    fp16: bool | None = Field(None, description="fp16 mixed precision, CUDA only (unset: on for GPUs without bf16, "
                                                "e.g. T4, V100; off elsewhere). true turns the preset's bf16 off.")
    gpus: int | Literal["all"] = Field(1, description="GPUs to train on, 1 to the GPUs present, or all (default 1). "
                                                      "More than 1 starts one worker per GPU with torchrun (DDP): "
                                                      "the effective batch is batch_size x gpus x grad_accum.")
    distributed: Distributed = Field(
        "ddp", description="How several ranks share the run: ddp (each rank holds the whole model, gradients "
                           "averaged), fsdp (PyTorch FSDP2: weights, gradients and optimizer states sharded over "
                           "the ranks, one transformer layer gathered at a time), zero2 (DeepSpeed ZeRO-2: "
                           "gradients and optimizer states sharded) or zero3 (DeepSpeed ZeRO-3: weights too). "
                           "tuitune writes the engine's config file into the run folder. On one GPU, fsdp and "
                           "zero3 only help with offload.")
    offload: bool = Field(False, description="fsdp/zero2/zero3: keep the optimizer states (and, for fsdp and zero3, "
                                             "the weights) in CPU memory between uses; fits larger models, "
                                             "slower. Ignored with ddp.")
    cpu_ranks: int = Field(1, ge=1, le=64, description="CPU only: training processes on this machine, 1-64 "
                                                       "(torchrun, gloo). More than 1 runs ddp/fsdp/zero as on "
                                                       "GPUs, to try a sharded or multi-node setup without one; "
                                                       "slower than 1 on one machine.")
    nodes: int = Field(1, ge=1, le=1024, description="Machines the run spans, 1-1024. Above 1, this machine is node "
                                                    "0 and `train` prints the command each other node runs "
                                                    "(needs master_addr and the run folder at the same path there).")
    master_addr: str = Field("", description="Several nodes: the address of node 0 (this machine) that the other "
                                             "nodes reach (an IP or host name).")
    master_port: int = Field(29500, ge=1024, le=65535, description="Several nodes: the rendezvous port on node 0, "
                                                                  "1024-65535.")
    accelerate_config: str = Field("", description="Your own accelerate config file (accelerate launch "
                                                   "--config_file); it wins over gpus, distributed and nodes, and "
                                                   "the run starts with `accelerate launch`.")
    use_liger_kernel: bool = Field(False, description="Liger's fused Triton kernels (less memory for long records "
                                                      "and large vocabularies); CUDA only, needs liger-kernel.")
    packing: bool = Field(False, description="Pack several records into each row (no padding); only correct with "
                                             "flash-attention (CUDA, flash-attn installed), refused otherwise.")
    gradient_checkpointing: bool | None = Field(None, description="Recompute activations to save memory (unset: "
                                                                  "on with CUDA, off on CPU, where it only slows "
                                                                  "training down).")
    group_by_length: bool = Field(True, description="Batch records of similar length, padding each batch only "
                                                    "to its longest record (when micro_batch_size > 1).")
    padding_free: bool = Field(False, description="Concatenate a batch into one row with no padding; only "
                                                  "correct with flash-attention (CUDA), refused on CPU.")
    merge: bool = Field(True, description="Merge the adapter into the run's merged/ folder at the end.")
    check_prompts: int = Field(3, ge=0, le=100, description="Held-out prompts the merged model must answer and "
                                                            "stop on, 0-100.")
    check_max_new_tokens: int | None = Field(None, ge=1, description="Token budget of the stop check, >= 1 "
                                                                     "(unset: max_length).")
    parity: bool | None = Field(
        None, description="After merging, answer parity_prompts held-out prompts greedily with transformers and "
                          "with vLLM on the merged folder and compare (identical share, first divergence, likely "
                          "cause: template, EOS or dtype); shown on the run's card and in runs --json (unset: on "
                          "with a CUDA GPU where vLLM is installed; off on a CPU, where vLLM's start costs 30-100 "
                          "s: `tuitune runs parity RUN` runs it later).")
    parity_prompts: int = Field(8, ge=1, le=100, description="Held-out prompts of the engine parity check, 1-100.")
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads, >= 1 (unset: torch's default).")
    early_stopping_patience: int | None = Field(
        None, ge=0, le=100, description="Stop when the held-out loss (evaluated every save_steps) has not improved "
                                        "for this many evaluations, 0-100; 0: off (unset: 3 when at least 8 "
                                        "records are held out, else 0). An adapter run then keeps the best "
                                        "checkpoint's weights.")
    eval: bool = Field(False, description="After training, compare tuned vs base vs few-shot prompting on the "
                                          "held-out records (and tuned vs base on a sample of training records) "
                                          "and record a verdict in words (the TUI turns it on).")

    @field_validator("max_steps")
    @classmethod
    def _steps(cls, v: int) -> int:
        if v == 0:
            raise ValueError("must be -1 (all epochs) or >= 1")
        return v

    @field_validator("quant", mode="before")
    @classmethod
    def _quant(cls, v: object) -> object:
        if v not in QUANTS:
            raise ValueError("must be nf4 (4-bit) or int8 (8-bit): the two bitsandbytes quantisations qlora trains on")
        return v

    @field_validator("gpus")
    @classmethod
    def _gpus(cls, v: int | str) -> int | str:
        if v != "all" and int(v) < 1:
            raise ValueError("must be a number >= 1 or all")
        return v

    @field_validator("master_addr")
    @classmethod
    def _addr(cls, v: str) -> str:
        v = v.strip()
        if v and (any(c.isspace() for c in v) or v.startswith("-")):
            raise ValueError("must be an IP address or a host name")
        return v

    @field_validator("target_modules")
    @classmethod
    def _modules(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, str) and "," in v:
            v = [m.strip() for m in v.split(",") if m.strip()]
        if v == ["all-linear"]:  # PEFT's keyword works only as a plain string
            v = "all-linear"
        if not v:
            raise ValueError("name at least one module, or all-linear")
        return v

    # ---- YAML round-trip ------------------------------------------------------------------------
    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_yaml(cls, text: str, *, where: str = "config") -> TrainConfig:
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{where} is not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{where} must be a YAML mapping of field: value")
        try:
            return cls(**data)
        except ValidationError as e:
            raise ConfigError(f"{where}: {problems(e)}") from None

    @classmethod
    def load(cls, path: Path | str) -> TrainConfig:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"{path} does not exist")
        return cls.from_yaml(path.read_text(encoding="utf-8"), where=str(path))

    def updated(self, **changes) -> TrainConfig:
        """A copy with the non-None changes applied (and validated)."""
        data = self.model_dump()
        data.update({k: v for k, v in changes.items() if v is not None})
        try:
            return TrainConfig(**data)
        except ValidationError as e:
            raise ConfigError(problems(e)) from None

    @property
    def peft_kind(self) -> str:
        """lora / qlora / dora / none: what kind of adapter this run trains."""
        if self.method in ADAPTER_METHODS:
            return self.method
        if self.method == "full":
            return "none"
        return self.adapter

    def after_steps(self) -> list[str]:
        """What the worker does after the last training step, in order (the ETA of the steps leaves it out):
        "merging" (adapter runs), "the stop check", "the held-out verdict" (eval), "the parity check" (when
        parity is on; unset parity is the worker's choice and is not counted here)."""
        out = ["merging"] if self.peft_kind != "none" else []
        if self.check_prompts > 0 and self.method != "pretrain":
            out.append("the stop check")
        if self.eval:
            out.append("the held-out verdict")
        if self.parity:
            out.append("the parity check")
        return out


def field_help() -> dict[str, str]:
    return {name: f.description or "" for name, f in TrainConfig.model_fields.items()}


def problems(e: ValidationError) -> str:
    """A pydantic error as `field: what is wrong (got value)`, one per problem."""
    out = []
    for err in e.errors():
        where = ".".join(map(str, err["loc"])) or "config"
        got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
        out.append(f"{where}: {err['msg']}{got}")
    return "; ".join(out)
