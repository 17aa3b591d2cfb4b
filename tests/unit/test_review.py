"""Review actions, undo and lessons."""

from __future__ import annotations

import pytest

from tuitune.core.data import review
from tuitune.core.data.samples import Sample


@pytest.fixture
def three(store):
    return [store.add_sample(Sample(instruction=f"q{i}", output=f"a{i}", origin="synth")) for i in range(3)]


def test_accept_reject_rate(store, three):
    review.accept(store, three[0].id, rating=5)
    review.reject(store, three[1].id, "wrong language")
    review.rate(store, three[2].id, 2)
    got = {s.id: (s.status, s.rating, s.reason) for s in store.samples()}
    assert got == {three[0].id: ("accepted", 5, ""), three[1].id: ("rejected", None, "wrong language"),
                   three[2].id: ("pending", 2, "")}
    with pytest.raises(review.ReviewError):
        review.reject(store, three[2].id, "  ")
    with pytest.raises(review.ReviewError):
        review.rate(store, three[2].id, 6)


def test_edit_keeps_first_original_and_undo_restores(store, three):
    sid = three[0].id
    review.edit(store, sid, output="better")
    review.edit(store, sid, output="best")
    s = store.get_sample(sid)
    assert (s.status, s.output, s.original["output"]) == ("edited", "best", "a0")
    review.undo(store)
    assert store.get_sample(sid).output == "better"
    review.undo(store)
    s = store.get_sample(sid)
    assert (s.status, s.output, s.original) == ("pending", "a0", None)
    assert review.undo(store) is None


def test_accept_after_edit_stays_edited(store, three):
    review.edit(store, three[0].id, output="fixed")
    assert review.accept(store, three[0].id).status == "edited"


def test_lessons_from_reasons_and_edits(store, three):
    extra = [store.add_sample(Sample(instruction=f"x{i}", output="o", origin="synth")) for i in range(2)]
    review.reject(store, three[0].id, "Answer in Chinese")
    review.reject(store, extra[0].id, "answer in  chinese")
    review.reject(store, extra[1].id, "too short")
    review.edit(store, three[1].id, output="A full answer")
    got = review.lessons(store)
    assert got[0] == "Answer in Chinese (2 samples rejected for this)"
    assert "too short" in got
    assert "The reviewer corrected the output: 'a1' -> 'A full answer'" in got


def test_lesson_shows_where_a_long_answer_was_changed(store):
    long = "Kubernetes " * 30 + "runs pods."
    s = store.add_sample(Sample(instruction="q", output=long, origin="synth"))
    review.edit(store, s.id, output="Kubernetes " * 30 + "schedules Pods onto nodes.")
    (lesson,) = review.lessons(store)
    assert "runs pods." in lesson and "schedules Pods onto nodes." in lesson
