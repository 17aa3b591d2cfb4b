"""The SFT loss computed only where it counts: logits at positions whose next token is trained, nothing else.

TRL's SFTTrainer scores every position on a CPU (its compact path needs Triton) and also computes the entropy
of each next-token distribution for its logs. A small model's output head is a large share of its work (49k
vocabulary x 576 hidden on the embedded model, about a fifth of the forward pass), so on a CPU that is most of
the difference between a run that fits in a coffee break and one that does not. This trainer asks the model for
logits only at trained positions (`logits_to_keep` with the positions as a tensor, a standard argument of
transformers' causal LMs), takes the cross-entropy in fp32, and logs token accuracy from the same logits.

It goes through the model's own forward (so PEFT adapters, DDP wrappers, logit scaling and soft-capping all
apply) and falls back to TRL's loss whenever the model does not take `logits_to_keep` or the caller wants the
outputs. Used on CPU; on CUDA TRL's fused, chunked head is kept (it bounds the logits' memory on big batches).
"""

from __future__ import annotations

import inspect

IGNORE = -100


def accepts_logits_to_keep(model) -> bool:
    """Whether the causal LM under any DDP/PEFT wrapper takes `logits_to_keep` in its forward."""
    inner = getattr(model, "module", model)  # DDP
    if hasattr(inner, "get_base_model"):  # PEFT
        inner = inner.get_base_model()
    return "logits_to_keep" in inspect.signature(type(inner).forward).parameters


def trained_positions(labels):
    """Positions i (0..L-2) whose next label is trained in any row of the batch: the only logits the loss needs."""
    nxt = labels[:, 1:] != IGNORE
    return nxt.any(dim=0).nonzero().squeeze(-1)


def assistant_loss(model, inputs: dict, num_items_in_batch=None):
    """(loss, correct, counted): summed next-token cross-entropy over trained positions divided by
    num_items_in_batch (the tokens of the whole accumulated batch) or, without it, by this batch's count."""
    import torch
    import torch.nn.functional as F

    labels = inputs["labels"]
    keep = trained_positions(labels)
    fwd = {k: v for k, v in inputs.items() if k not in ("labels", "shift_labels", "length")}
    fwd["use_cache"] = False
    logits = model(**fwd, logits_to_keep=keep).logits  # (batch, len(keep), vocab)
    targets = labels[:, keep + 1]
    flat = logits.float().reshape(-1, logits.size(-1))
    loss_sum = F.cross_entropy(flat, targets.reshape(-1), ignore_index=IGNORE, reduction="sum")
    mask = targets != IGNORE
    counted = mask.sum()
    with torch.no_grad():
        correct = ((logits.argmax(-1) == targets) & mask).sum()
    denom = num_items_in_batch if num_items_in_batch is not None else counted.clamp(min=1)
    if torch.is_tensor(denom):
        denom = denom.to(loss_sum.device)
    return loss_sum / denom, correct, counted


def sft_trainer_class():
    """SFTTrainer with the trained-positions-only loss (imports TRL, so only the worker calls it)."""
    from trl import SFTTrainer

    class LeanSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if return_outputs or "labels" not in inputs or not accepts_logits_to_keep(model):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            loss, correct, counted = assistant_loss(model, inputs, num_items_in_batch)
            mode = "train" if model.training else "eval"
            n = int(counted)
            if n:
                self._metrics[mode]["mean_token_accuracy"].append(int(correct) / n)
            # Like Trainer.compute_loss: num_items_in_batch counts every rank's tokens and DDP averages gradients.
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            return loss

    return LeanSFTTrainer
