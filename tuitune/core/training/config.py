"""The training configuration: one plain YAML file per run (`runs/<id>/config.yaml`), every field documented.

`None` means "decide for me": presets (presets.py) fill those from the data and the hardware at launch, and the
filled-in values are what the run folder records, so the file alone re-runs the same training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Method = Literal["lora", "qlora", "dora", "full", "dpo", "kto", "orpo", "pretrain"]
METHODS: tuple[str, ...] = ("lora", "qlora", "dora", "full", "dpo", "kto", "orpo", "pretrain")
PREFERENCE_METHODS: tuple[str, ...] = ("dpo", "kto", "orpo")
# Methods that train a PEFT adapter (the preference and pretrain methods use `adapter` below).
ADAPTER_METHODS: tuple[str, ...] = ("lora", "qlora", "dora")


class ConfigError(Exception):
    """A training configuration that cannot run, with what to change."""


class TrainConfig(BaseModel):
    """Everything a training run needs. Saved as runs/<id>/config.yaml; any field can be edited there."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    method: Method = Field("lora", description="lora | qlora (4-bit nf4 base) | dora | full | dpo | kto | orpo | "
                                               "pretrain (continued pre-training on raw text files).")
    adapter: Literal["lora", "qlora", "dora", "none"] = Field(
        "lora", description="For dpo/kto/orpo/pretrain: train a LoRA/QLoRA/DoRA adapter or all weights (none).")
    base: str = Field("smollm2-135m-instruct", description="Base model: a registered name or a model folder.")
    base_path: str = Field("", description="Resolved folder of the base model (filled at launch).")
    data: str = Field("", description="Training data file (JSONL). At launch the project's samples are "
                                      "snapshotted into runs/<id>/data.jsonl and this points there.")
    text_files: list[str] = Field(default_factory=list, description="Raw .txt/.md files for method=pretrain.")
    holdout: int | None = Field(None, description="Records kept out of training for eval loss and the stop check "
                                                  "(None: 3 when there are at least 12 records, else 0).")
    epochs: float | None = Field(None, description="Passes over the data (None: preset from dataset size).")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: run all epochs).")
    learning_rate: float | None = Field(None, description="Peak learning rate (None: preset by method).")
    lr_scheduler: str = Field("cosine", description="transformers scheduler name (linear, cosine, constant...).")
    warmup_ratio: float = Field(0.05, description="Fraction of steps for linear warm-up.")
    weight_decay: float = Field(0.0, description="AdamW weight decay.")
    batch_size: int | None = Field(None, description="Per-device batch size (None: preset from lengths).")
    grad_accum: int = Field(1, description="Gradient accumulation steps (effective batch = batch_size x this).")
    micro_batch_size: int | None = Field(
        None, description="Records per forward pass; gradients add up over batch_size / micro_batch_size passes, "
                          "so the optimizer sees the same batch (None on CPU: as many records as fit about 350 tokens, "
                          "often 1, as padding and attention masks cost more than batching gains there; "
                          "batch_size on CUDA). Must divide batch_size. SFT only.")
    max_length: int | None = Field(None, description="Max tokens per record (None: longest record, rounded up). "
                                                     "A longer record is an error, not silently truncated.")
    lora_r: int | None = Field(None, description="LoRA rank (None: preset from dataset size).")
    lora_alpha: int | None = Field(None, description="LoRA alpha (None: 2 x rank).")
    lora_dropout: float = Field(0.05, description="LoRA dropout.")
    target_modules: str | list[str] = Field("all-linear", description="Modules that get adapters.")
    beta: float = Field(0.1, description="DPO/KTO/ORPO beta.")
    seed: int = Field(42, description="Random seed.")
    save_steps: int | None = Field(None, description="Checkpoint every N steps (None: about 10 per run, >= 1).")
    logging_steps: int = Field(1, description="Write a step event every N steps.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present, else CPU.")
    bf16: bool | None = Field(None, description="bf16 mixed precision (None: on with a bf16 CUDA GPU; on a CPU with "
                                                "native bf16 (AVX512-BF16/AMX, Arm BF16) only where a one-second probe "
                                                "measured it faster than fp32 (matmuls in bf16, weights stay fp32); "
                                                "off on other CPUs, which only emulate it).")
    fp16: bool = Field(False, description="fp16 mixed precision (CUDA only).")
    gradient_checkpointing: bool | None = Field(None, description="None: on with CUDA, off on CPU (it only "
                                                                  "slows a CPU down).")
    group_by_length: bool = Field(True, description="Batch records of similar length, padding each batch only "
                                                    "to its longest record (when micro_batch_size > 1).")
    padding_free: bool = Field(False, description="Concatenate a batch into one row with no padding; only "
                                                  "correct with flash-attention (CUDA), refused on CPU.")
    merge: bool = Field(True, description="Merge the adapter into runs/<id>/merged/ at the end.")
    check_prompts: int = Field(3, description="Held-out prompts the merged model must answer and stop on.")
    check_max_new_tokens: int | None = Field(None, description="Token budget of the stop check (None: max_length).")
    num_threads: int | None = Field(None, description="torch CPU threads (None: torch's default).")

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
            problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
            raise ConfigError(f"{where}: {problems}") from None

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
            problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
            raise ConfigError(problems) from None

    @property
    def peft_kind(self) -> str:
        """lora / qlora / dora / none: what kind of adapter this run trains."""
        if self.method in ADAPTER_METHODS:
            return self.method
        if self.method == "full":
            return "none"
        return self.adapter


def field_help() -> dict[str, str]:
    return {name: f.description or "" for name, f in TrainConfig.model_fields.items()}
