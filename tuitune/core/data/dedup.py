"""Duplicate detection for synthesis: exact (normalised prompt) and near-duplicate (MinHash over token
bigrams, CJK-aware: each CJK character is a token, other text is split into words).

A candidate is a near duplicate of a known sample when its instruction AND its input are both at least
`threshold` similar (estimated Jaccard) to that sample's. Comparing the fields separately keeps a constant
instruction ("Translate into Chinese:") from making every input look alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tuitune.core.data.samples import Sample, normalise

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
    """Known prompts (instruction + input). `check()` says whether a candidate repeats one; `add()` records it.

    Signatures are kept in growing numpy arrays, so a check compares against all known samples at once."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, num_perm: int = NUM_PERM):
        if not 0 < threshold <= 1:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.num_perm = num_perm
        self._exact: dict[str, int | str] = {}
        self._ids: list[int | str] = []
        self._sig = [None, None]  # per field (instruction, input): array (capacity, num_perm)
        self._empty = [None, None]  # per field: bool array, True where the field is empty
        self._perms = None
        self._last = None

    def __len__(self) -> int:
        return len(self._ids)

    def _signature(self, text: str):
        import numpy as np
        from datasketch import MinHash

        sh = shingles(text)
        if not sh:
            return None
        if self._perms is None:  # generating the permutations is the costly part: once per index
            proto = MinHash(num_perm=self.num_perm, seed=1)
            self._perms = {"permutations": proto.permutations,
                           **({"scheme": proto.scheme} if hasattr(proto, "scheme") else {})}  # datasketch >= 2
        m = MinHash(num_perm=self.num_perm, seed=1, **self._perms)
        m.update_batch([s.encode("utf-8") for s in sh])
        return np.asarray(m.hashvalues, dtype=np.uint64)

    def _field_sims(self, col: int, sig):
        import numpy as np

        n = len(self._ids)
        empty = self._empty[col][:n]
        if sig is None:  # an empty field is similar only to other empty fields
            return empty.astype(float)
        sims = np.count_nonzero(self._sig[col][:n] == sig, axis=1) / self.num_perm
        sims[empty] = 0.0
        return sims

    def check(self, sample: Sample) -> Match | None:
        import numpy as np

        key = sample.prompt_key()
        if key in self._exact:
            return Match("exact", self._exact[key], 1.0)
        if not self._ids:
            return None
        sigs = (self._signature(sample.instruction), self._signature(sample.input))
        self._last = (key, sigs)  # add() right after check() reuses them
        sims = np.minimum(self._field_sims(0, sigs[0]), self._field_sims(1, sigs[1]))
        best = int(sims.argmax())
        if sims[best] >= self.threshold:
            return Match("near", self._ids[best], float(sims[best]))
        return None

    def add(self, sample: Sample, ident: int | str | None = None) -> None:
        import numpy as np

        ident = sample.id if ident is None else ident
        key = sample.prompt_key()
        self._exact.setdefault(key, ident)
        n = len(self._ids)
        cached = self._last[1] if self._last and self._last[0] == key else None
        for col, text in enumerate((sample.instruction, sample.input)):
            if self._sig[col] is None or n == len(self._sig[col]):  # grow (double) the arrays
                cap = max(64, 2 * n)
                sig = np.zeros((cap, self.num_perm), dtype=np.uint64)
                empty = np.ones(cap, dtype=bool)
                if self._sig[col] is not None:
                    sig[:n], empty[:n] = self._sig[col][:n], self._empty[col][:n]
                self._sig[col], self._empty[col] = sig, empty
            s = cached[col] if cached else self._signature(text)
            self._empty[col][n] = s is None
            if s is not None:
                self._sig[col][n] = s
        self._ids.append(ident)

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
