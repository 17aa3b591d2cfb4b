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
