"""core.browse: the review list's queries (filters, search with LIKE wildcards taken literally, pages by id)."""

from __future__ import annotations

import pytest

from tuitune.core.data import browse, review
from tuitune.core.data.samples import Sample
from tuitune.core.data.store import StoreError


@pytest.fixture
def filled(store):
    store.conn.execute("INSERT INTO rounds (id, started_at) VALUES (1, 'x'), (2, 'x')")
    texts = ["100% sure", "a_b c", "plain words", "漢字 and CJK", "back\\slash", "more plain words"]
    store.add_samples(Sample(instruction=t, output=f"out {i}", origin="synth", round_id=1 + i % 2)
                      for i, t in enumerate(texts))
    ids = browse.ids(store)
    review.accept(store, ids[0], rating=5)
    review.reject(store, ids[1], "bad formatting")
    return store, ids


def test_filters_match_sql_truth(filled):
    store, ids = filled
    assert ids == sorted(ids) and len(ids) == 6
    assert browse.ids(store, browse.Filter(status="pending")) == ids[2:]
    assert browse.ids(store, browse.Filter(round_id=2)) == ids[1::2]
    assert browse.ids(store, browse.Filter(rating=5)) == [ids[0]]
    assert browse.ids(store, browse.Filter(rating=0)) == ids[1:]
    assert browse.ids(store, browse.Filter(status="accepted", round_id=2)) == []
    assert browse.ids(store, limit=2) == ids[:2]


def test_search_takes_wildcards_literally(filled):
    store, ids = filled
    assert browse.ids(store, browse.Filter(search="100%")) == [ids[0]]
    assert browse.ids(store, browse.Filter(search="%")) == [ids[0]]
    assert browse.ids(store, browse.Filter(search="_")) == [ids[1]]
    assert browse.ids(store, browse.Filter(search="\\")) == [ids[4]]
    assert browse.ids(store, browse.Filter(search="PLAIN")) == [ids[2], ids[5]]  # case-insensitive (ASCII)
    assert browse.ids(store, browse.Filter(search="漢字")) == [ids[3]]
    assert browse.ids(store, browse.Filter(search="out 5")) == [ids[5]]  # the output is searched too


def test_rows_and_samples_through_a_reader(filled):
    store, ids = filled
    conn = browse.open_reader(store.path)
    try:
        rows = browse.rows(conn, ids[:3])
        assert rows[ids[0]].status == "accepted" and rows[ids[0]].rating == 5
        assert rows[ids[1]].preview == "a_b c" and rows[ids[1]].round_id == 2
        assert browse.sample(conn, ids[1]).reason == "bad formatting"
        assert browse.rows(conn, [999999]) == {}
        with pytest.raises(StoreError, match="reload the list"):
            browse.sample(conn, 999999)
        with pytest.raises(Exception, match="readonly"):
            conn.execute("DELETE FROM samples")
    finally:
        conn.close()
    assert browse.round_ids(store) == [1, 2]
    assert browse.status_counts(store) == {"pending": 4, "accepted": 1, "rejected": 1, "edited": 0}


def test_bad_filters_say_what_is_allowed(tmp_path):
    with pytest.raises(browse.BrowseError, match="pending"):
        browse.Filter(status="done")
    with pytest.raises(browse.BrowseError, match="0 \\(unrated\\) or 1-5"):
        browse.Filter(rating=7)
    with pytest.raises(browse.BrowseError, match="open an existing project folder"):
        browse.open_reader(tmp_path / "missing.db")


def test_reader_opens_projects_in_awkward_folders(tmp_path):
    from tuitune.core.data.store import Store

    with Store.open(tmp_path / "my project #2 ?x") as store:
        store.add_sample(Sample(instruction="q", output="a"))
        conn = browse.open_reader(store.path)
        assert browse.ids(conn) == browse.ids(store) != []
        conn.close()


def test_matches_agrees_with_the_query_for_every_filter(filled):
    """The review list drops or takes back one changed sample with Filter.matches instead of reloading:
    it must answer as the SQL does, LIKE's ASCII-only case folding included."""
    store, ids = filled
    store.add_sample(Sample(instruction="only émile here", output="Straße", origin="synth", round_id=1))
    review.rate(store, ids[2], 3)
    filters = [browse.Filter(status=st, round_id=r, rating=rt, search=q)
               for st in (None, "pending", "accepted", "rejected") for r in (None, 1, 2)
               for rt in (None, 0, 3, 5) for q in ("", "plain", "PLAIN", "%", "_", "émile", "ÉMILE", "STRASSE", "out")]
    samples = store.samples()
    for flt in filters:
        assert [s.id for s in samples if flt.matches(s)] == browse.ids(store, flt), flt
    assert not browse.Filter(search="ÉMILE").matches(samples[-1])  # SQLite folds ASCII letters only
