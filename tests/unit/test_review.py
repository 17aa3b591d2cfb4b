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


def test_undo_is_scoped_to_the_session(project):
    """Two reviewers on one project: each undo reverts that reviewer's own last action, never the other's."""
    from tuitune.core.data.store import Store

    a, b = Store.open(project, session="alice"), Store.open(project, session="bob")
    s1 = a.add_sample(Sample("q1", "a1", origin="synth"))
    s2 = a.add_sample(Sample("q2", "a2", origin="synth"))
    review.accept(a, s1.id)
    review.reject(b, s2.id, "wrong language")
    restored = review.undo(a)  # before: undid bob's reject (the latest action by anyone)
    assert restored.id == s1.id
    assert a.get_sample(s1.id).status == "pending" and a.get_sample(s2.id).status == "rejected"
    assert review.undo(a) is None  # alice has nothing left to undo
    assert review.undo(b).id == s2.id and b.get_sample(s2.id).status == "pending"
    a.close()
    b.close()


def test_undo_refuses_to_overwrite_another_reviewers_later_change(project):
    from tuitune.core.data.store import Store

    a, b = Store.open(project, session="alice"), Store.open(project, session="bob")
    s = a.add_sample(Sample("q", "a", origin="synth"))
    review.accept(a, s.id)
    review.reject(b, s.id, "too short / incomplete")
    with pytest.raises(review.ReviewError, match="another reviewer"):
        review.undo(a)
    assert a.get_sample(s.id).status == "rejected"
    a.close()
    b.close()


def test_cli_undo_in_another_terminal_does_not_touch_this_one(project):
    """`review --undo` from another terminal session (another session id) leaves this session's action."""
    import os
    import subprocess
    import sys

    from tuitune.core.data.store import Store

    with Store.open(project) as st:
        sid = st.add_sample(Sample("q", "a", origin="synth")).id
    cmd = [sys.executable, "-m", "tuitune.cli", "--project", str(project), "review"]
    env = {k: v for k, v in os.environ.items() if k != "TUITUNE_SESSION"}
    mine = subprocess.run(cmd + ["--accept", str(sid)], capture_output=True, text=True, env=env, check=False)
    assert mine.returncode == 0, mine.stderr
    other = subprocess.run(cmd + ["--undo"], capture_output=True, text=True, env=env, check=False,
                           start_new_session=True)  # another terminal: another session id
    assert other.returncode == 0 and "nothing to undo" in other.stdout, other.stdout + other.stderr
    with Store.open(project) as st:
        assert st.get_sample(sid).status == "accepted"
    again = subprocess.run(cmd + ["--undo"], capture_output=True, text=True, env=env, check=False)
    assert again.returncode == 0 and f"#{sid}" in again.stdout
    with Store.open(project) as st:
        assert st.get_sample(sid).status == "pending"
