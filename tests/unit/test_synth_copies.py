"""A synthesized sample whose answer copies a seed's (word for word, or apart from spacing and case) is flagged:
on real K8s EN->ZH seeds, by `copies.py` and by a synthesis round that stores the flag as the sample's reason.
The teacher of the round test is the fault: it hands back seed #8's answer under a new question."""

from __future__ import annotations

import asyncio
import json

import pytest

from tuitune.core.data import review
from tuitune.core.data.samples import Sample
from tuitune.core.synth.copies import AnswerCopies, flag_copies, is_copy_flag
from tuitune.core.synth.engine import RoundParams, SynthRound
from tuitune.core.synth.teacher import Reply, Teacher, TeacherConfig

INSTRUCTION = "Translate the following English text to Chinese"


def k8s_pairs(real_fixtures, n: int) -> list[dict]:
    lines = (real_fixtures / "k8s_docs_en_zh.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[:n]]


@pytest.fixture
def k8s_seeded(store, real_fixtures):
    pairs = k8s_pairs(real_fixtures, 20)
    store.set_task(name="k8s-zh", description="Translate Kubernetes documentation from English to Chinese")
    store.add_samples(Sample(INSTRUCTION, p["zh"], input=p["en"], origin="seed", status="accepted")
                      for p in pairs[:10])
    return store, pairs


def test_copied_answers_are_found_exactly_or_after_normalising(k8s_seeded):
    store, pairs = k8s_seeded
    seeds = store.samples(origin="seed")
    copies = AnswerCopies(seeds)
    eighth = seeds[7]
    new_question = pairs[15]["en"]

    same = Sample(INSTRUCTION, eighth.output, input=new_question, origin="synth")
    match = copies.check(same)
    assert match is not None and match.source_id == eighth.id and match.exact
    assert match.flag() == f"copies seed #{eighth.id}'s answer word for word"

    spaced = Sample(INSTRUCTION, "  " + eighth.output.replace("，", " ， ").upper() + "\n", input=new_question)
    near = copies.check(spaced)
    assert near is not None and near.source_id == eighth.id and not near.exact
    assert "apart from spacing and case" in near.flag()

    en = AnswerCopies([Sample("Say it", pairs[0]["en"].title(), origin="seed", id=3)])  # case folds too
    assert en.check(Sample("Say it again", "  ".join(pairs[0]["en"].lower().split()))).source_id == 3

    fresh = Sample(INSTRUCTION, pairs[15]["zh"], input=new_question)  # the right translation: not a copy
    assert copies.check(fresh) is None
    assert flag_copies(fresh, copies) is fresh
    short = AnswerCopies([Sample("Sentiment?", "positive", origin="seed", id=1)])
    assert short.check(Sample("Sentiment of this?", "positive")) is None  # short labels are legitimately shared


def test_a_round_stores_the_flag_and_review_replaces_it(k8s_seeded, monkeypatch):
    store, pairs = k8s_seeded
    seeds = store.samples(origin="seed")
    eighth = seeds[7]
    written = [{"instruction": INSTRUCTION, "input": pairs[12]["en"], "output": eighth.output},  # a copy
               {"instruction": INSTRUCTION, "input": pairs[13]["en"], "output": pairs[13]["zh"]}]  # its own

    async def copying_teacher(self, messages, **kw):
        return Reply(json.dumps({"samples": written}, ensure_ascii=False), "stop")

    monkeypatch.setattr(Teacher, "complete", copying_teacher)
    teacher = Teacher(TeacherConfig("copier", "http://127.0.0.1:9/v1", "copier"))
    fin = asyncio.run(SynthRound(store, teacher, RoundParams(n=2, per_request=2, concurrency=1)).run())
    assert fin.status == "finished"
    got = {s.input: s for s in store.samples(origin="synth")}
    copied, own = got[pairs[12]["en"]], got[pairs[13]["en"]]
    assert copied.reason == f"copies seed #{eighth.id}'s answer word for word" and is_copy_flag(copied.reason)
    assert own.reason == ""
    assert copied.status == "pending"  # flagged, not dropped: the person decides

    from tuitune.tui.widgets.sample_detail import detail_text

    assert f"Flag: copies seed #{eighth.id}'s answer word for word" in detail_text(copied).plain
    accepted = review.accept(store, copied.id)
    assert accepted.reason == "" and "Flag" not in detail_text(accepted).plain
