"""Duplicate detection for synthesis: exact (normalised prompt) and near-duplicate (MinHash over token
bigrams, CJK-aware: each CJK character is a token, other text is split into words).

A candidate is a near duplicate of a known sample when its instruction AND its input are both at least
`threshold` similar (estimated Jaccard) to that sample's. Comparing the fields separately keeps a constant
instruction ("Translate into Chinese:") from making every input look alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tuitune.core.samples import Sample, normalise

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")
DEFAULT_THRESHOLD = 0.8
NUM_PERM = 128


def tokens(text: str) -> list[str]:
    """Word tokens; every CJK character is its own token."""
    return _TOKEN.findall(normalise(text))


def shingles(text: str) -> set[str]:
    toks = tokens(text)
    if len(toks) < 2:
        return set(toks)
    return {toks[i] + " " + toks[i + 1] for i in range(len(toks) - 1)}


def jaccard(a: str, b: str) -> float:
    """Exact Jaccard similarity of the two texts' shingle sets (two empty texts are identical)."""
    sa, sb = shingles(a), shingles(b)
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


@dataclass
class Match:
    kind: str  # "exact" | "near"
    other: int | str  # id of the sample it repeats
    similarity: float


class DedupIndex:
    """Known prompts (instruction + input). `check()` says whether a candidate repeats one; `add()` records it."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, num_perm: int = NUM_PERM):
        if not 0 < threshold <= 1:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.num_perm = num_perm
        self._exact: dict[str, int | str] = {}
        self._ids: list[int | str] = []
        self._sigs: list = []  # per sample: (instruction signature, input signature or None)

    def __len__(self) -> int:
        return len(self._ids)

    def _sig(self, text: str):
        import numpy as np
        from datasketch import MinHash

        sh = shingles(text)
        if not sh:
            return None
        m = MinHash(num_perm=self.num_perm, seed=1)
        m.update_batch([s.encode("utf-8") for s in sh])
        return np.asarray(m.hashvalues)

    def _sims(self, sig, col: int):
        import numpy as np

        n = len(self._ids)
        out = np.zeros(n)
        if sig is None:  # empty field: similar only to other empty fields
            for i, pair in enumerate(self._sigs):
                out[i] = 1.0 if pair[col] is None else 0.0
            return out
        for i, pair in enumerate(self._sigs):
            other = pair[col]
            if other is not None:
                out[i] = float(np.count_nonzero(other == sig)) / self.num_perm
        return out

    def check(self, sample: Sample) -> Match | None:
        key = sample.prompt_key()
        if key in self._exact:
            return Match("exact", self._exact[key], 1.0)
        if not self._ids:
            return None
        s_ins, s_inp = self._sig(sample.instruction), self._sig(sample.input)
        sims = self._matrix_sims(s_ins, s_inp)
        best = int(sims.argmax())
        if sims[best] >= self.threshold:
            return Match("near", self._ids[best], float(sims[best]))
        return None

    def _matrix_sims(self, s_ins, s_inp):
        import numpy as np

        return np.minimum(self._sims(s_ins, 0), self._sims(s_inp, 1))

    def add(self, sample: Sample, ident: int | str | None = None) -> None:
        ident = sample.id if ident is None else ident
        self._exact.setdefault(sample.prompt_key(), ident)
        self._ids.append(ident)
        self._sigs.append((self._sig(sample.instruction), self._sig(sample.input)))

    def check_and_add(self, sample: Sample, ident: int | str | None = None) -> Match | None:
        match = self.check(sample)
        if match is None:
            self.add(sample, ident)
        return match


def index_of(samples: list[Sample], threshold: float = DEFAULT_THRESHOLD) -> DedupIndex:
    idx = DedupIndex(threshold)
    for s in samples:
        idx.add(s)
    return idx
