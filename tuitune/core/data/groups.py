"""Duplicate groups and a split that never separates a group.

Two records belong to one group when their prompts (instruction + input) are identical after normalising,
or near-duplicates by the project's own measure (`dedup.DedupIndex`: MinHash over CJK-aware bigrams, both
fields at least `threshold` similar). A held-out or test split drawn from groups, not records, keeps a
record and its copies on one side, so a test score is never a memory of a training record.

Used by the export split (`tuitune export --test-size`) and the training run's held-out split alike.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tuitune.core.data.dedup import DEFAULT_THRESHOLD, DedupIndex
from tuitune.core.data.samples import Sample


def duplicate_groups(samples: list[Sample], threshold: float = DEFAULT_THRESHOLD) -> list[int]:
    """A group number per sample (0..k-1, in order of first appearance); duplicates share a number."""
    parent = list(range(len(samples)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    idx = DedupIndex(threshold)
    for i, s in enumerate(samples):
        match = idx.check(s)
        if match is not None:
            a, b = find(i), find(int(match.other))
            parent[max(a, b)] = min(a, b)
        idx.add(s, i)
    numbers: dict[int, int] = {}
    return [numbers.setdefault(find(i), len(numbers)) for i in range(len(samples))]


@dataclass
class Split:
    train: list[int]  # indices into the input, in input order
    test: list[int]
    groups: int  # how many groups there were
    kept_together: int  # groups of 2+ records (each lies wholly on one side)
    records_in_groups: int  # records in those groups


def grouped_split(groups: list[int], test_count: int, seed: int) -> Split:
    """Put whole groups into the test side until it holds `test_count` records (or as close below it as
    whole groups allow), chosen at random with `seed`; everything else is train."""
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    order = sorted(members)
    random.Random(seed).shuffle(order)
    test: list[int] = []
    for g in order:
        if len(test) >= test_count:
            break
        if len(test) + len(members[g]) <= test_count:
            test.extend(members[g])
    chosen = set(test)
    multi = [m for m in members.values() if len(m) > 1]
    return Split(train=[i for i in range(len(groups)) if i not in chosen], test=sorted(test),
                 groups=len(members), kept_together=len(multi), records_in_groups=sum(len(m) for m in multi))


def holdout_count(n: int, test_size: float) -> int:
    """Records for the test side: an int is a count, a float in (0, 1) a fraction (at least 1 record).
    Raises ValueError naming the value when it makes no sense for `n` records."""
    if isinstance(test_size, int) and not isinstance(test_size, bool):
        if not 0 <= test_size < n:
            raise ValueError(f"test size {test_size} must be a count from 0 to {n - 1} (there are {n} records)")
        return test_size
    if not (0.0 <= test_size < 1.0):  # also false for nan
        raise ValueError(f"test size {test_size!r} must be a fraction in [0, 1) or a whole count of records")
    return 0 if test_size == 0 else min(n - 1, max(1, round(n * test_size)))
