"""Presets: fill the unset (None) config values from the dataset, the model size and the hardware.

Aimed at the common small-data complaint ("my 50 examples were not learned"). What moves an adapter is roughly
optimizer steps x learning rate, not epochs: 76 records at batch 16 for 5 epochs were 25 steps at 2e-4, and the
embedded 135M model learned nothing of LLaMA-Factory's identity set. So:
- batch size: at most n_train / 8 (at least 8 optimizer steps per epoch), at least 4, a power of two, and no
  more records than fit the hardware's token budget per batch;
- epochs: by dataset size, raised until the run has at least MIN_STEPS optimizer steps (at most MAX_EPOCHS);
- learning rate for adapters by model size: 2e-4 is the usual LoRA rate at 7B parameters; smaller models take a
  larger one (x sqrt(7B / params), at most 5x: 1e-3 for the 135M model);
- held-out records (holdout_for): ~10% (8..200) from 40 records on, for eval loss, early stopping (patience 3
  evaluations, the best checkpoint's weights kept for adapters) and the after-training verdict;
- max_length from the longest record instead of a fixed 1024/2048.
Every value is only a default; the config file overrides it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from tuitune.core.training.config import PREFERENCE_METHODS, TrainConfig

# Peak learning rates: (adapter, full fine-tuning)
LEARNING_RATES: dict[str, tuple[float, float]] = {
    "sft": (2e-4, 2e-5),
    "dpo": (5e-5, 5e-7),
    "kto": (5e-5, 5e-7),
    "orpo": (5e-5, 8e-6),
    "pretrain": (1e-4, 1e-5),
}
# Tokens per batch the preset aims at: CPU is slow, GPU wants larger batches.
BATCH_TOKENS = {"cpu": 4096, "cuda": 16384}
# Tokens per forward pass on CPU: records are stacked while their mean length fits. Measured with
# bench/train_throughput.py (2-core AVX512-BF16 EPYC): best records per pass were 4 at a mean of 85 tokens, 2 at
# 112 and 129, 1 at 211 and 316 (docs/training.md). Longer records run unpadded, one per pass.
CPU_PASS_TOKENS = 350


@dataclass
class Hardware:
    cuda: bool
    gpus: int
    bf16: bool  # runs bf16 natively (a bf16 CUDA GPU, or a CPU flag); `bf16: true` is refused without it
    probe_dir: Path | None = None  # CPU: where bf16_probe keeps its measurement; None: do not measure

    @property
    def kind(self) -> str:
        return "cuda" if self.cuda else "cpu"

    def bf16_default(self) -> bool:
        """The preset's bf16: on a bf16 GPU; on a CPU only where native bf16 was measured to be faster."""
        if self.cuda or not self.bf16:
            return self.bf16
        from tuitune.core.training.bf16_probe import bf16_pays

        return self.probe_dir is not None and bf16_pays(self.probe_dir)


def detect_hardware(device: str = "auto", probe_dir: Path | None = None) -> Hardware:
    """From the one machine description (core/hardware.py: detected, or TUITUNE_HARDWARE)."""
    from tuitune.core import hardware

    machine = hardware.detect()
    cuda = machine.cuda and device != "cpu"
    bf16 = machine.bf16 if cuda else cpu_has_native_bf16()
    return Hardware(cuda=cuda, gpus=len(machine.gpus) if cuda else 0, bf16=bf16, probe_dir=probe_dir)


# CPU feature flags (as /proc/cpuinfo names them) that run bf16 dot products natively: x86 AVX512-BF16 and AMX,
# Arm's BF16 extension. Without one, torch emulates bf16 and it is slower than fp32.
NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                cpuinfo = f.read()
        except OSError:  # not Linux: stay in fp32
            return False
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features") and NATIVE_BF16_FLAGS & set(value.split()):
            return True
    return False


MIN_STEPS = 60  # optimizer steps a small-data run gets at least (epochs are raised up to MAX_EPOCHS for it)
MAX_EPOCHS = 20.0
MIN_STEPS_PER_EPOCH = 8
LORA_LR_REFERENCE_PARAMS = 7e9  # model size at which the family's adapter rate (LEARNING_RATES) is the usual one
MAX_LR_SCALE = 5.0
PATIENCE = 3  # evaluations without a better held-out loss before early stopping
MIN_HELD_FOR_EARLY_STOP = 8


def holdout_for(n: int, method: str) -> int:
    """Held-out records for n records: ~10% (at least 8, at most 200) from 40 records on, 3 from 12, else 0;
    none for pretrain (raw text)."""
    if method == "pretrain" or n < 12:
        return 0
    if n < 40:
        return 3
    return min(200, max(8, round(n / 10)))


def param_count(config) -> int | None:
    """Approximate parameters of a transformers decoder config (embeddings + attention + MLP), or None."""
    h = getattr(config, "hidden_size", None)
    layers = getattr(config, "num_hidden_layers", None)
    if not h or not layers:
        return None
    heads = getattr(config, "num_attention_heads", None) or 1
    kv = getattr(config, "num_key_value_heads", None) or heads
    inter = getattr(config, "intermediate_size", None) or 4 * h
    attn = 2 * h * h + 2 * h * (h * kv // heads)
    return int((getattr(config, "vocab_size", 0) or 0) * h + layers * (attn + 3 * h * inter))


def adapter_lr(family_lr: float, params: int | None) -> float:
    """The family's adapter learning rate scaled for the model size (x sqrt(7B / params), 0.5x to 5x)."""
    if not params:
        return family_lr
    scale = min(MAX_LR_SCALE, max(0.5, math.sqrt(LORA_LR_REFERENCE_PARAMS / params)))
    return float(f"{family_lr * scale:.2g}")


def batch_for(n_train: int, mean_tokens: float, hw_kind: str, preference: bool) -> int:
    """Records per optimizer step: within the token budget, and small enough for MIN_STEPS_PER_EPOCH steps."""
    bs = int(BATCH_TOKENS[hw_kind] // max(1.0, mean_tokens))
    if preference:
        bs //= 2  # chosen + rejected
    by_steps = max(4, 2 ** int(math.log2(max(1, n_train // MIN_STEPS_PER_EPOCH))))
    return max(1, min(16, bs, by_steps, n_train))


def epochs_for(n: int) -> float:
    if n <= 20:
        return 15.0
    if n <= 50:
        return 10.0
    if n <= 200:
        return 5.0
    if n <= 1000:
        return 3.0
    return 2.0


def rank_for(n: int) -> int:
    return 16 if n <= 1000 else 32


def cpu_micro_batch(batch_size: int, mean_tokens: float) -> int:
    """Records per forward pass on CPU: the largest divisor of batch_size whose records fit CPU_PASS_TOKENS."""
    fit = max(1, int(CPU_PASS_TOKENS // max(1.0, mean_tokens)))
    return max(d for d in range(1, batch_size + 1) if batch_size % d == 0 and d <= fit)


def round_length(longest: int) -> int:
    """Longest record rounded up to a multiple of 64 (at least 64)."""
    return max(64, int(math.ceil(longest / 64) * 64))


def holdout_reason(n: int, method: str) -> str:
    """Why holdout_for(n, method) holds out what it does, in words."""
    if method == "pretrain":
        return "none for pretrain (raw text)"
    if n < 12:
        return f"none: {n} records (held out from 12 on)"
    if n < 40:
        return f"3 of {n} records (12-39 records)"
    return f"~10% of {n} records (8 to 200)"


def apply(cfg: TrainConfig, lengths: list[int], hw: Hardware, model_params: int | None = None,
          reasons: dict[str, str] | None = None, measured_lr: tuple[float, str] | None = None) -> TrainConfig:
    """A copy of cfg with every None filled. `lengths` are token lengths of all the records (held-out ones
    included); model_params: the base model's size (None: the family's rates as they are). `reasons`, when
    given, gets field -> why the preset chose that value, for each field filled here. `measured_lr`: (rate, why)
    measured for this base model (models.MEASURED_LR), taken for SFT adapters instead of the size rule."""
    why: dict[str, str] = {}
    n = len(lengths)
    family = "sft" if cfg.method in ("lora", "qlora", "dora", "full") else cfg.method
    family_lr, full_lr = LEARNING_RATES[family]
    mean = sum(lengths) / max(1, n)
    changes: dict = {}
    holdout = holdout_for(n, cfg.method) if cfg.holdout is None else cfg.holdout
    if cfg.holdout is None:
        why["holdout"] = holdout_reason(n, cfg.method)
    changes["holdout"] = holdout
    n_train = max(1, n - holdout)
    if cfg.max_length is None:
        changes["max_length"] = round_length(max(lengths, default=64))
        why["max_length"] = f"longest record ({max(lengths, default=0)} tokens) rounded up to a multiple of 64"
    if cfg.learning_rate is None:
        if cfg.peft_kind == "none":
            changes["learning_rate"] = full_lr
            why["learning_rate"] = f"the {family} rate for full fine-tuning"
        elif family == "sft" and measured_lr:
            changes["learning_rate"], why["learning_rate"] = measured_lr
        elif family == "sft" and model_params:
            changes["learning_rate"] = adapter_lr(family_lr, model_params)
            why["learning_rate"] = (f"{family_lr:g} at 7B x sqrt(7B / {_size(model_params)} params), "
                                    f"0.5x-{MAX_LR_SCALE:g}x")
        else:
            changes["learning_rate"] = family_lr
            why["learning_rate"] = f"the {family} adapter rate"
    if cfg.lora_r is None:
        changes["lora_r"] = rank_for(n)
        why["lora_r"] = f"{n} records (16 up to 1000, else 32)"
    if cfg.lora_alpha is None:
        changes["lora_alpha"] = 2 * changes.get("lora_r", cfg.lora_r)
        why["lora_alpha"] = "2 x rank"
    if cfg.batch_size is None:
        preference = cfg.method in PREFERENCE_METHODS
        changes["batch_size"] = batch_for(n_train, mean, hw.kind, preference)
        why["batch_size"] = (f"<= 1/8 of {n_train} training records, <= {BATCH_TOKENS[hw.kind]} tokens on "
                             f"{'GPU' if hw.cuda else 'CPU'} (mean {mean:.0f}{', pairs count twice' if preference else ''})"
                             f", <= 16")
    if cfg.epochs is None:
        epochs = 1.0 if cfg.method == "pretrain" and n > 1000 else epochs_for(n_train)
        per_epoch = math.ceil(n_train / (changes.get("batch_size", cfg.batch_size) * cfg.grad_accum))
        changes["epochs"] = max(epochs, min(MAX_EPOCHS, float(math.ceil(MIN_STEPS / per_epoch))))
        why["epochs"] = (f"{epochs:g} for {n_train} training records" if changes["epochs"] == epochs else
                         f"raised from {epochs:g} toward {MIN_STEPS} steps ({per_epoch} per epoch, <= "
                         f"{MAX_EPOCHS:g} epochs)")
    if cfg.early_stopping_patience is None:
        changes["early_stopping_patience"] = PATIENCE if holdout >= MIN_HELD_FOR_EARLY_STOP else 0
        why["early_stopping_patience"] = (
            f"{PATIENCE} evaluations: {holdout} records held out" if holdout >= MIN_HELD_FOR_EARLY_STOP else
            f"off: {holdout} held out, early stopping needs {MIN_HELD_FOR_EARLY_STOP}")
    if cfg.fp16 is None:  # GPUs without bf16 (T4, V100) train in fp16 mixed precision
        changes["fp16"] = hw.cuda and not hw.bf16 and not cfg.bf16
        why["fp16"] = ("this GPU has no bf16" if changes["fp16"] else
                       "CUDA only" if not hw.cuda else "bf16 is asked for" if cfg.bf16 else "the GPU runs bf16")
    if cfg.bf16 is None:  # fp16 asked for: never both
        changes["bf16"] = hw.bf16_default() and not changes.get("fp16", cfg.fp16)
        why["bf16"] = _bf16_reason(hw, changes["bf16"], bool(changes.get("fp16", cfg.fp16)))
    if cfg.micro_batch_size is None:
        bs = changes.get("batch_size", cfg.batch_size)
        changes["micro_batch_size"] = bs if hw.cuda or cfg.method in PREFERENCE_METHODS else cpu_micro_batch(bs, mean)
        why["micro_batch_size"] = ("the whole batch on a GPU" if hw.cuda else
                                   "the whole batch (preference methods)" if cfg.method in PREFERENCE_METHODS else
                                   f"CPU: as many as fit {CPU_PASS_TOKENS} tokens (mean {mean:.0f})")
    if cfg.gradient_checkpointing is None:
        changes["gradient_checkpointing"] = hw.cuda
        why["gradient_checkpointing"] = "on with CUDA (less memory)" if hw.cuda else "off on CPU (only slower there)"
    out = cfg.updated(**changes)
    if out.save_steps is None:
        steps = total_steps(out, n_train)
        out = out.updated(save_steps=max(1, steps // 10))
        why["save_steps"] = f"about 10 checkpoints over {steps} steps"
    if reasons is not None:
        reasons.update(why)
    return out


def _size(params: int) -> str:
    return f"{params / 1e9:.1f}B" if params >= 1e9 else f"{params / 1e6:.0f}M"


def _bf16_reason(hw: Hardware, on: bool, fp16: bool) -> str:
    if fp16:
        return "fp16 is on"
    if hw.cuda:
        return "the GPU runs bf16" if on else "this GPU has no bf16"
    if not hw.bf16:
        return "this CPU only emulates bf16 (slower than fp32)"
    if hw.probe_dir is None:
        return "not measured on this CPU"
    return "native bf16 measured faster than fp32 here" if on else "native bf16 measured no faster than fp32 here"


def total_steps(cfg: TrainConfig, n: int) -> int:
    if cfg.max_steps and cfg.max_steps > 0:
        return cfg.max_steps
    per_epoch = max(1, math.ceil(n / ((cfg.batch_size or 1) * cfg.grad_accum)))
    return max(1, math.ceil(per_epoch * (cfg.epochs or 1)))
