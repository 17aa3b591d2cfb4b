"""Exact and near-duplicate detection (CJK-aware) used by synthesis."""

from __future__ import annotations

import pytest

from tuitune.core.data.dedup import DedupIndex, jaccard, tokens
from tuitune.core.data.samples import Sample


def S(instruction, input_="", output="x", id_=None):
    return Sample(instruction=instruction, input=input_, output=output, id=id_)


def test_tokens_split_cjk_per_character():
    assert tokens("什么是Pod？ Kubernetes集群") == ["什", "么", "是", "pod", "kubernetes", "集", "群"]


def test_exact_duplicate_ignores_case_width_and_spaces():
    idx = DedupIndex()
    idx.add(S("What is a Pod?", id_=1))
    m = idx.check(S("  what   is a POD？ ", output="different answer"))  # full-width question mark
    assert m is not None and m.kind == "exact" and m.other == 1


def test_near_duplicate_english():
    idx = DedupIndex(threshold=0.6)
    idx.add(S("How often should someone with high blood pressure check it at home every week?", id_=7))
    m = idx.check(S("How often should someone with high blood pressure check it at home each week?"))
    assert m is not None and m.kind == "near" and m.other == 7
    assert idx.check(S("Can people with asthma go swimming in cold water?")) is None


def test_near_duplicate_chinese():
    idx = DedupIndex(threshold=0.6)
    idx.add(S("高血压患者每天吃多少盐合适？", id_=3))
    m = idx.check(S("高血压患者每天应该吃多少盐合适？"))
    assert m is not None and m.kind == "near"
    assert idx.check(S("慢性肾病患者可以吃香蕉吗？")) is None


def test_constant_instruction_does_not_make_inputs_duplicates():
    ins = "Translate this Kubernetes documentation into Simplified Chinese."
    idx = DedupIndex()
    idx.add(S(ins, "A Pod is the smallest deployable unit of computing.", id_=1))
    assert idx.check(S(ins, "Namespaces isolate groups of resources within one cluster.")) is None
    assert idx.check(S(ins, "A Pod is the smallest deployable unit of computing!")) is not None


def test_threshold_is_configurable():
    a = "explain the pod lifecycle in kubernetes clusters today"
    b = "explain the pod lifecycle in kubernetes clusters please"
    sim = jaccard(a, b)
    assert 0.5 < sim < 1
    strict, loose = DedupIndex(threshold=0.95), DedupIndex(threshold=0.5)
    for idx in (strict, loose):
        idx.add(S(a, id_=1))
    assert strict.check(S(b)) is None
    assert loose.check(S(b)) is not None
    with pytest.raises(ValueError):
        DedupIndex(threshold=0)


def test_check_and_add_blocks_the_second_copy():
    idx = DedupIndex()
    assert idx.check_and_add(S("alpha beta gamma delta"), "r1") is None
    assert idx.check_and_add(S("alpha beta gamma delta"), "r1") is not None
    assert len(idx) == 1
