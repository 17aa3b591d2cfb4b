"""Early stopping on the held-out loss, and keeping the best checkpoint.

With `early_stopping_patience` > 0 and held-out records, the trainer evaluates the held-out loss every
`save_steps` steps (where it also checkpoints), stops after `patience` evaluations without a lower loss, and an
adapter run loads the best checkpoint's weights at the end (cheap: the checkpoints are there anyway). A full
fine-tune keeps its last weights (loading a full checkpoint again costs as much as the model)."""

from __future__ import annotations

from tuitune.core.training.config import TrainConfig


def enabled(cfg: TrainConfig, n_held: int) -> bool:
    return bool(cfg.early_stopping_patience) and n_held > 0 and cfg.method != "pretrain"


def trainer_args(cfg: TrainConfig, n_held: int) -> dict:
    """TrainingArguments fields to add (none when early stopping is off)."""
    if not enabled(cfg, n_held):
        return {}
    return {"eval_strategy": "steps", "eval_steps": cfg.save_steps, "metric_for_best_model": "eval_loss",
            "greater_is_better": False, "load_best_model_at_end": cfg.peft_kind != "none"}


def callback(cfg: TrainConfig, n_held: int):
    """The transformers callback that stops training (None when early stopping is off)."""
    if not enabled(cfg, n_held):
        return None
    from transformers import EarlyStoppingCallback

    return EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience)
