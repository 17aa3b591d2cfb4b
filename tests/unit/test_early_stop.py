"""Early stopping on the held-out loss: on only with patience and held-out records; the trainer accepts the
arguments (load-best needs matching save/eval steps); full fine-tunes do not reload the best checkpoint."""

from __future__ import annotations

from tuitune.core.training import early_stop
from tuitune.core.training.config import TrainConfig


def test_on_only_with_patience_and_held_out_records():
    cfg = TrainConfig(early_stopping_patience=3, save_steps=6, batch_size=8, micro_batch_size=4, epochs=7)
    assert early_stop.trainer_args(cfg, 0) == {} and early_stop.callback(cfg, 0) is None
    assert early_stop.trainer_args(cfg.updated(early_stopping_patience=0), 8) == {}
    args = early_stop.trainer_args(cfg, 8)
    assert args["eval_steps"] == 6 and args["load_best_model_at_end"] and args["metric_for_best_model"] == "eval_loss"
    assert not early_stop.trainer_args(cfg.updated(method="full"), 8)["load_best_model_at_end"]
    assert early_stop.callback(cfg, 8).early_stopping_patience == 3


def test_transformers_accepts_the_worker_arguments_with_early_stopping(tmp_path):
    from transformers import TrainingArguments

    from tuitune.core.training.worker import common_args

    cfg = TrainConfig(early_stopping_patience=3, save_steps=6, batch_size=8, micro_batch_size=4, epochs=7,
                      learning_rate=1e-3, bf16=False, gradient_checkpointing=False)
    args = common_args(cfg, tmp_path, False, 68) | early_stop.trainer_args(cfg, 8)
    targs = TrainingArguments(**args)
    assert targs.load_best_model_at_end and targs.eval_steps == targs.save_steps == 6
    assert str(targs.eval_strategy.value) == "steps"
