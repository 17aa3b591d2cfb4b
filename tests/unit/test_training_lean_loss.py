"""The CPU loss (logits only at trained positions) equals the model's own loss, and so do its gradients."""

from __future__ import annotations

import pytest

from tuitune.core.training import data
from tuitune.core.training.lean_loss import accepts_logits_to_keep, assistant_loss, trained_positions


@pytest.fixture(scope="module")
def lora_model(embedded_model):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(embedded_model)
    model = AutoModelForCausalLM.from_pretrained(embedded_model, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear",
                                             task_type="CAUSAL_LM", init_lora_weights=False))
    return tok, model


def _batch(tok, convs):
    import torch

    rows = [data.tokenize_chat(tok, msgs) for msgs in convs]
    n = max(len(ids) for ids, _ in rows)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return {"input_ids": torch.tensor([ids + [pad] * (n - len(ids)) for ids, _ in rows]),
            "attention_mask": torch.tensor([[1] * len(ids) + [0] * (n - len(ids)) for ids, _ in rows]),
            "labels": torch.tensor([lab + [-100] * (n - len(lab)) for _, lab in rows])}


CONVS = [
    [{"role": "system", "content": "You translate English to Chinese."},
     {"role": "user", "content": "Pods are the smallest deployable units of computing in Kubernetes."},
     {"role": "assistant", "content": "Pod 是 Kubernetes 中可部署的最小计算单元。"}],
    [{"role": "user", "content": "What lowers blood pressure?"},
     {"role": "assistant", "content": "Less salt, regular exercise and, if prescribed, medication."},
     {"role": "user", "content": "And sleep?"},
     {"role": "assistant", "content": "Yes: seven to nine hours helps."}],
]


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_loss_and_gradients_match_the_models_own_loss(lora_model):
    import torch

    tok, model = lora_model
    assert accepts_logits_to_keep(model)
    batch = _batch(tok, CONVS)  # two rows of different length: padding, a mask, two assistant turns in one row
    model.zero_grad()
    ref = model(**batch).loss
    ref.backward()
    ref_grads = _grads(model)
    model.zero_grad()
    loss, correct, counted = assistant_loss(model, dict(batch))
    loss.backward()
    assert torch.allclose(loss, ref, rtol=1e-4), (loss.item(), ref.item())
    assert int(counted) == int((batch["labels"][:, 1:] != -100).sum())
    assert 0 <= int(correct) <= int(counted)
    for name, g in _grads(model).items():
        assert torch.allclose(g, ref_grads[name], rtol=1e-3, atol=1e-6), name


def test_accumulated_micro_batches_equal_one_batch(lora_model):
    """num_items_in_batch normalises each one-record pass by the tokens of the whole batch, so two accumulated
    passes give the same loss as the padded batch of two (what micro_batch_size=1 relies on)."""
    import torch

    tok, model = lora_model
    whole = _batch(tok, CONVS)
    total = int((whole["labels"][:, 1:] != -100).sum())
    with torch.no_grad():
        ref = model(**whole).loss
        parts = [assistant_loss(model, _batch(tok, [c]), torch.tensor(total))[0] for c in CONVS]
    assert torch.allclose(sum(parts), ref, rtol=1e-4)


def test_only_trained_positions_are_scored():
    import torch

    labels = torch.tensor([[-100, -100, 5, 6, -100], [-100, -100, -100, -100, 7]])
    # position i predicts token i+1: rows need positions 1, 2 (row 0) and 3 (row 1)
    assert trained_positions(labels).tolist() == [1, 2, 3]


def test_chunked_head_equals_the_models_own_loss_and_gradients(lora_model):
    """With a chunk budget of a few rows' logits the head runs apart from the forward, chunk by chunk under
    checkpointing (the path a 262k-vocabulary model takes): same loss, correct count and gradients."""
    import torch

    from tuitune.core.training import lean_loss

    tok, model = lora_model
    batch = _batch(tok, CONVS)
    assert lean_loss.chunkable(model) is not None
    model.zero_grad()
    ref = model(**batch).loss
    ref.backward()
    ref_grads = _grads(model)
    model.zero_grad()
    vocab = model.config.vocab_size
    calls = []
    real = lean_loss._head_loss
    lean_loss._head_loss = lambda head, h, w: calls.append(h.size(0)) or real(head, h, w)
    try:
        loss, correct, counted = assistant_loss(model, dict(batch), chunk_logits=5 * vocab)
    finally:
        lean_loss._head_loss = real
    loss.backward()
    assert max(calls) == 5 and sum(calls) >= int(counted)  # chunks of 5 rows (recomputed in the backward)
    assert torch.allclose(loss, ref, rtol=1e-4), (loss.item(), ref.item())
    assert 0 < int(correct) <= int(counted)
    for name, g in _grads(model).items():  # summed in another order: equal up to fp32 rounding
        err = ((g - ref_grads[name]).norm() / ref_grads[name].norm().clamp(min=1e-12)).item()
        assert err < 1e-3, (name, err)  # a wrong shift, mask or missing norm gives errors near 1
