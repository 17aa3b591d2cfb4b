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

A large vocabulary (Gemma 3: 262,144 entries; 512 MB of fp32 logits for 2 x 256 positions, and as much again for
their gradient) would make even the trained positions' logits the biggest tensor of a step. When they would pass
CHUNK_LOGITS elements, the head runs on the backbone's hidden states in chunks of rows under activation
checkpointing, so at most one chunk's logits exist at a time, in the forward and in the backward (the chunk's
logits are recomputed there). That path needs the plain head (no soft-capping or logit scaling in the config) and
a model not wrapped by DDP; otherwise the model's own forward is used as above.
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


CHUNK_LOGITS = 1 << 25  # logits elements one chunk of the head may hold (32M: 128 MB in fp32)
SCALED_LOGITS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "lm_head_multiplier", "output_multiplier")


def chunkable(model):
    """(backbone, head) when the head can run apart from the model's forward, else None."""
    if hasattr(model, "module"):  # DDP: its forward must run for the gradient hooks
        return None
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    from torch.distributed.fsdp import FSDPModule

    if isinstance(model, FSDPModule) or isinstance(inner, FSDPModule):
        return None  # FSDP2: the root unit's all-gather runs in the model's own forward
    config = inner.config.get_text_config() if hasattr(inner.config, "get_text_config") else inner.config
    if any(getattr(config, name, None) not in (None, 1, 1.0) for name in SCALED_LOGITS):
        return None
    try:
        backbone, head = inner.get_decoder(), inner.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    return (backbone, head) if backbone is not None and head is not None else None


def assistant_loss(model, inputs: dict, num_items_in_batch=None, chunk_logits: int = CHUNK_LOGITS):
    """(loss, correct, counted): summed next-token cross-entropy over trained positions divided by
    num_items_in_batch (the tokens of the whole accumulated batch) or, without it, by this batch's count."""
    import torch
    import torch.nn.functional as F

    labels = inputs["labels"]
    keep = trained_positions(labels)
    fwd = {k: v for k, v in inputs.items() if k not in ("labels", "shift_labels", "length")}
    fwd["use_cache"] = False
    targets = labels[:, keep + 1]
    mask = targets != IGNORE
    counted = mask.sum()
    inner = getattr(model, "module", model)  # DDP wraps the model; its config is the wrapped one's
    vocab = getattr(getattr(inner, "config", None), "vocab_size", 0) or 0
    parts = chunkable(model) if targets.numel() * vocab > chunk_logits else None
    if parts is not None:
        loss_sum, correct = _chunked(parts, fwd, keep, targets, mask, max(1, chunk_logits // vocab))
    else:
        logits = model(**fwd, logits_to_keep=keep).logits  # (batch, len(keep), vocab)
        flat = logits.float().reshape(-1, logits.size(-1))
        loss_sum = F.cross_entropy(flat, targets.reshape(-1), ignore_index=IGNORE, reduction="sum")
        with torch.no_grad():
            correct = ((logits.argmax(-1) == targets) & mask).sum()
    denom = num_items_in_batch if num_items_in_batch is not None else counted.clamp(min=1)
    if torch.is_tensor(denom):
        denom = denom.to(loss_sum.device)
    return loss_sum / denom, correct, counted


def _chunked(parts, fwd: dict, keep, targets, mask, rows: int):
    """Summed cross-entropy and correct count with the head applied `rows` trained positions at a time."""
    import torch
    from torch.utils.checkpoint import checkpoint

    backbone, head = parts
    hidden = backbone(**fwd).last_hidden_state[:, keep][mask]  # (trained positions, hidden)
    wanted = targets[mask]
    loss_sum = hidden.new_zeros((), dtype=torch.float32)
    correct = torch.zeros((), dtype=torch.long, device=hidden.device)
    for i in range(0, hidden.size(0), rows):
        part, right = checkpoint(_head_loss, head, hidden[i:i + rows], wanted[i:i + rows], use_reentrant=False)
        loss_sum = loss_sum + part
        correct = correct + right
    return loss_sum, correct


def _head_loss(head, hidden, wanted):
    import torch
    import torch.nn.functional as F

    logits = head(hidden).float()
    with torch.no_grad():
        right = (logits.argmax(-1) == wanted).sum()
    return F.cross_entropy(logits, wanted, reduction="sum"), right


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
