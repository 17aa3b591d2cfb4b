"""Counted words for messages: "1 round", "2 rounds" (plain English; no UI here)."""

from __future__ import annotations

# nouns whose plural is not the word + "s"
IRREGULAR = {"entry": "entries", "query": "queries", "reply": "replies", "copy": "copies", "match": "matches",
             "batch": "batches", "this": "these"}


def plural(n: int, word: str, many: str | None = None) -> str:
    """`n` and the noun in the form that fits it: plural(1, "round") -> "1 round", plural(2, "round") ->
    "2 rounds", plural(3, "group of duplicates", "groups of duplicates") -> "3 groups of duplicates"."""
    return f"{n} {noun(n, word, many)}"


def noun(n: int, word: str, many: str | None = None) -> str:
    """The noun alone, singular for exactly 1 (and -1), plural otherwise (0 included: "0 samples")."""
    if abs(n) == 1:
        return word
    return many if many is not None else IRREGULAR.get(word, word + "s")
