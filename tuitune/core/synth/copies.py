"""Answers a synthesized sample copied from an example the teacher was shown (a seed or a kept sample).

A small teacher often hands back one of its examples' answers under a new question (seen: sample #9 had
seed #8's answer word for word). Such a sample is not dropped (the question may be new and worth keeping with
a fresh answer), it is flagged: the engine stores the flag as the sample's `reason`, which the review screen
shows, and which accepting, editing or rejecting the sample replaces.

Equal means equal after `samples.normalise` (Unicode NFKC, case) with every space removed (spacing, line
breaks, a space added around CJK punctuation); answers shorter than `MIN_CHARS` such characters are not
compared (a label such as "positive" is legitimately shared).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from tuitune.core.data.samples import Sample, normalise

MIN_CHARS = 12
_SPACE = re.compile(r"\s+")
FLAG_PREFIX = "copies "  # every flag starts so: "copies seed #8's answer word for word"


@dataclass(frozen=True)
class CopiedAnswer:
    """`sample`'s answer is the answer of example `source_id` (origin `source_origin`)."""

    source_id: int | None
    source_origin: str
    exact: bool  # character for character (apart from leading/trailing space), not only after normalising

    def flag(self) -> str:
        """The reason stored with the sample, as the review screen shows it."""
        what = "seed" if self.source_origin == "seed" else "sample"
        ref = f"{what} #{self.source_id}" if self.source_id is not None else f"a {what}"
        how = "word for word" if self.exact else "apart from spacing and case"
        return f"{FLAG_PREFIX}{ref}'s answer {how}"


class AnswerCopies:
    """The answers of the examples a round shows the teacher, looked up by their normalised text."""

    def __init__(self, examples: Iterable[Sample] = ()):
        self._by_text: dict[str, Sample] = {}
        for s in examples:
            self.add(s)

    def add(self, example: Sample) -> None:
        key = _key(example.output)
        if len(key) >= MIN_CHARS:
            self._by_text.setdefault(key, example)  # the first one (seeds come first) names the copy

    def check(self, sample: Sample) -> CopiedAnswer | None:
        """Which example's answer `sample` repeats, or None."""
        key = _key(sample.output)
        if len(key) < MIN_CHARS:
            return None
        source = self._by_text.get(key)
        if source is None:
            return None
        return CopiedAnswer(source.id, source.origin, exact=source.output.strip() == sample.output.strip())

    def __len__(self) -> int:
        return len(self._by_text)


def _key(text: str) -> str:
    return _SPACE.sub("", normalise(text))


def flag_copies(sample: Sample, copies: AnswerCopies) -> Sample:
    """`sample` with the copy flag as its reason if its answer repeats an example's; unchanged otherwise (and
    a reason already set, e.g. by a person, is never replaced)."""
    if sample.reason:
        return sample
    match = copies.check(sample)
    return sample if match is None else sample.with_(reason=match.flag())


def is_copy_flag(reason: str) -> bool:
    """True for a reason this module wrote (so the review screen can show it as a flag, not a rejection)."""
    return reason.startswith(FLAG_PREFIX) and reason.endswith(("word for word", "apart from spacing and case"))
