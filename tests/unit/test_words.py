"""Counted nouns in messages: "1 round", not "1 rounds"."""

from __future__ import annotations

import pytest

from tuitune.core.words import noun, plural


@pytest.mark.parametrize(("n", "word", "want"), [
    (0, "round", "0 rounds"), (1, "round", "1 round"), (2, "round", "2 rounds"), (1, "record", "1 record"),
    (21, "sample", "21 samples"), (1, "entry", "1 entry"), (3, "entry", "3 entries"), (-1, "step", "-1 step"),
])
def test_plural(n, word, want):
    assert plural(n, word) == want


def test_a_phrase_gives_its_own_plural():
    assert plural(1, "group of duplicates", "groups of duplicates") == "1 group of duplicates"
    assert plural(4, "group of duplicates", "groups of duplicates") == "4 groups of duplicates"
    assert noun(2, "child", "children") == "children"
