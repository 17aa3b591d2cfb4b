"""local.LocalModel on the embedded model: batched greedy answers, each cut at its own token limit."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def model(embedded_model):
    from tuitune.core.evaluation.local import LocalModel

    return LocalModel(embedded_model)


def test_each_answer_stops_at_its_own_limit_whatever_its_batch_mates_get(model):
    convs = [[{"role": "user", "content": "Write a long story about a lighthouse keeper."}],
             [{"role": "user", "content": "Write a long poem about the sea."}]]
    together = model.answer(convs, 40, limits=[6, 40])
    assert len(model.tok(together[0], add_special_tokens=False)["input_ids"]) <= 7  # 6 tokens (+/- a merge)
    assert len(model.tok(together[1], add_special_tokens=False)["input_ids"]) > 7
    alone = model.answer(convs[:1], 6)
    assert together[0] == alone[0]  # the same answer as with that budget alone: not cut by its neighbours
    assert model.answer(convs, 6)[0] == alone[0] and len(model.stopped) == 2


def _groups(rows, sizes):
    out, at = [], 0
    for n in sizes:
        out.append(rows[at:at + n])
        at += n
    assert at == len(rows)
    return out


def test_batches_fit_the_key_value_cache_and_the_prompt_cap():
    from types import SimpleNamespace

    from tuitune.core.evaluation import local

    smol = SimpleNamespace(num_attention_heads=9, num_key_value_heads=3, hidden_size=576, num_hidden_layers=30)
    big = SimpleNamespace(num_attention_heads=32, num_key_value_heads=32, hidden_size=2048, num_hidden_layers=24)
    kv_smol, kv_big = local.kv_bytes_per_token(smol, 2), local.kv_bytes_per_token(big, 2)
    assert kv_smol == 2 * 30 * 3 * 64 * 2 and kv_big == 2 * 24 * 32 * 64 * 2
    rows = [(200, 896)] * 32
    assert local.plan_batches(rows, kv_smol) == [32]  # the embedded model: one batch of every row
    sizes = local.plan_batches(rows, kv_big)  # a 1.7B model with full heads: the cache decides
    assert len(sizes) > 1 and all(n * 1096 * kv_big <= local.KV_BUDGET for n in sizes)
    assert max(local.plan_batches([(3000, 100)] * 5, kv_smol)) == local.BATCH_TOKENS // 3000  # long prompts
    assert local.plan_batches([(100_000, 10)] * 2, kv_big) == [1, 1]  # one row always goes, whatever it costs
    assert max(local.plan_batches([(100, 100)] * 40, kv_smol, most=8)) == 8


def test_short_answers_do_not_wait_for_long_ones_unless_it_pays():
    from tuitune.core.evaluation import local

    kv = 23040
    short_long = [(100, 32)] * 8 + [(100, 896)] * 8
    groups = _groups(short_long, local.plan_batches(short_long, kv))
    assert [{lim for _, lim in g} for g in groups] == [{32}, {896}]  # 8 rows decoding 896 steps for nothing: split
    close = [(100, 500)] * 8 + [(100, 520)] * 8
    assert local.plan_batches(close, kv) == [16]  # 20 more steps for 8 rows cost less than a second batch


def test_bf16_weights_answer_and_say_so(embedded_model):
    from tuitune.core.evaluation.local import LocalModel

    m = LocalModel(embedded_model, bf16=True)
    out = m.answer([[{"role": "user", "content": "What is 2+2?"}]] * 3, 16)
    assert m.bf16 and str(m.model.dtype) == "torch.bfloat16" and len(out) == 3 and all(out)
    assert out[0] == out[1] == out[2]  # the same prompt in one batch: the same greedy answer
