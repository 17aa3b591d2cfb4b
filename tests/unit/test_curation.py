"""Judge verdicts, the reviewer's decisions they are calibrated on, bulk actions undone in one step, per-round stats
and the judge's parsing, on a real project database."""

from __future__ import annotations

import json

import pytest

from tuitune.core.curation import judge as jd
from tuitune.core.curation import judgments
from tuitune.core.curation.round_stats import round_stats, trend
from tuitune.core.data import review as rv
from tuitune.core.data.samples import Sample
from tuitune.core.synth import rounds


def _round(store, n, lessons=()):
    r = rounds.start_round(store, n, {"lessons": list(lessons)})
    ids = [store.add_sample(Sample(f"q{r.id}-{i}", f"a{r.id}-{i}", origin="synth", round_id=r.id,
                                   teacher="a" if i % 2 else "b")).id for i in range(n)]
    rounds.finish_round(store, r.id, {"stored": n})
    return r.id, ids


def _judge(store, ids, scores):
    for sid, score in zip(ids, scores):
        judgments.save(store, judgments.Judgment(sid, score, f"critique {sid}", "", "t/m", "built-in:x@1",
                                                 at="2026-01-01T00:00:00.000+00:00"))  # before any review below


def test_decisions_pair_scores_with_human_decisions_only(store):
    _, ids = _round(store, 6)
    _judge(store, ids, [5, 4, 3, 2, 1, 5])
    rv.accept(store, ids[0])
    rv.reject(store, ids[3], "wrong")
    rv.edit(store, ids[1], output="fixed")  # edited after the judge scored the old text: not accepted as it was
    rv.bulk(store, [ids[5]], "accept")  # the judge's own decision never counts
    assert sorted(judgments.decisions(store)) == [(2, False), (4, False), (5, True)]
    judgments.save(store, judgments.Judgment(ids[1], 4, "", "", "t/m", "r"))  # scored again, the edited text
    assert (4, True) in judgments.decisions(store)
    assert judgments.pending_scores(store) == [(ids[2], 3), (ids[4], 1)]


def test_to_judge_skips_seeds_and_scored_unless_again(store):
    store.add_sample(Sample("seed q", "seed a", origin="seed"))
    rid, ids = _round(store, 3)
    _judge(store, ids[:1], [4])
    assert judgments.to_judge(store) == ids[1:]
    assert judgments.to_judge(store, again=True) == ids
    assert judgments.to_judge(store, again=True, rubric="built-in:x@1", judge="t/m") == ids[1:]
    assert judgments.to_judge(store, round_id=rid + 1) == []


def test_bulk_action_is_one_undo_and_leaves_others_alone(store):
    _, ids = _round(store, 5)
    rv.accept(store, ids[4])  # a human decision before: not part of the bulk action
    before = {s.id: s for s in store.samples()}
    assert rv.bulk(store, ids, "accept") == 4  # ids[4] is not pending: left alone
    after = {s.id: s for s in store.samples()}
    assert all(after[i].status == "accepted" and after[i].decided_by == "judge" for i in ids[:4])
    assert after[ids[4]] == before[ids[4]]
    restored = rv.undo(store)
    assert restored is not None
    now = {s.id: s.with_(updated_at="") for s in store.samples()}
    assert now == {i: s.with_(updated_at="") for i, s in before.items()}
    assert rv.undo(store).id == ids[4]  # the next undo is the earlier single action
    with pytest.raises(rv.ReviewError, match="reason"):
        rv.bulk(store, ids, "reject")


def test_round_stats_count_review_per_round_and_teacher(store):
    r1, ids1 = _round(store, 5, lessons=["be brief"])
    r2, ids2 = _round(store, 5)
    rv.accept(store, ids1[0])
    for sid in ids1[1:]:
        rv.reject(store, sid, "wrong facts")
    for sid in ids2:
        rv.accept(store, sid)
    rv.reject(store, ids2[0], "too long")
    _judge(store, ids2, [5, 4, 4, 5, 2])
    s1, s2 = round_stats(store)
    assert (s1.generated, s1.reviewed, s1.accepted, s1.rejected) == (5, 5, 1, 4)
    assert s1.acceptance == pytest.approx(0.2)
    assert s1.top_reasons == [("wrong facts", 4)] and s1.lessons == ["be brief"]
    assert s2.acceptance == pytest.approx(0.8) and s2.judge_mean == pytest.approx(4.0) and s2.judged == 5
    assert s2.teachers["a"]["stored"] == 2 and s2.teachers["b"]["stored"] == 3
    assert trend([s1, s2]) == f"round {r2}: 80% accepted (round {r1}: 20%), judge mean 4.0"
    assert trend([s1]) == f"round {r1}: 20% accepted"
    json.dumps([s.to_dict() for s in (s1, s2)])


@pytest.mark.parametrize(("text", "score", "lesson"), [
    ('{"score": 4, "critique": "fine", "lesson": 0}', 4, ""),
    ('Sure: ```json\n{"score": "2", "critique": "wrong", "lesson": 1}\n```', 2, "be brief"),
    ('{"score": 3.0, "critique": "meh", "lesson": "made up facts"}', 3, "made up facts"),
    ('score: 5 because it is good', 5, ""),
])
def test_parse_is_lenient(text, score, lesson):
    v = jd.parse(text, ["be brief"])
    assert v.score == score and v.lesson == lesson


@pytest.mark.parametrize("text", ['{"score": 7, "critique": "x"}', "no idea", '{"critique": "x"}', ""])
def test_parse_without_a_score_is_none(text):
    assert jd.parse(text, []) is None


def test_rubric_version_follows_a_project_override(tmp_path):
    builtin = jd.rubric_version(None)
    assert builtin.startswith("built-in:judge_sample.md.j2@")
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "judge_sample.md.j2").write_text("Score {{ example | json }} 1-5.")
    own = jd.rubric_version(tmp_path)
    assert own.startswith("project:") and own != builtin
    msgs = jd.messages(Sample("q", "a"), task="t", system_prompt="", lessons=[], project=tmp_path)
    assert msgs[0]["content"].startswith("Score {")


def test_schema_bounds_the_lesson_number():
    s = jd.schema(3)
    assert s["properties"]["lesson"]["maximum"] == 3 and s["properties"]["score"]["enum"] == [1, 2, 3, 4, 5]
