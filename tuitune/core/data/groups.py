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
    """A group number per sample (0..k-1, in order of first appearance); duplicates share a number.

    A sample joins the group of EVERY earlier sample it repeats (exact prompt, or near-duplicate), so a chain
    a~b, b~c puts a, b and c in one group, and a sample close to two groups merges them."""
    import numpy as np

    parent = list(range(len(samples)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        a, b = find(i), find(j)
        parent[max(a, b)] = min(a, b)

    idx = DedupIndex(threshold)
    first_of: dict[str, int] = {}
    for i, s in enumerate(samples):
        key = s.prompt_key()
        if key in first_of:  # same prompt: same near matches as the first one, already merged
            union(i, first_of[key])
            continue
        first_of[key] = i
        sigs = (idx._signature(s.instruction), idx._signature(s.input))
        if len(idx):
            sims = np.minimum(idx._field_sims(0, sigs[0]), idx._field_sims(1, sigs[1]))
            for j in np.flatnonzero(sims >= threshold):
                union(i, int(idx._ids[j]))
        idx._last = (key, sigs)  # add() reuses the signatures (as after check())
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


def parse_test_size(text: str) -> int | float:
    """A test size as typed: a whole number is a count of records ("20"), a decimal a fraction in [0, 1)
    ("0.1"). Raises ValueError naming the text for anything else (1.5, -0.1, nan, inf, abc)."""
    t = str(text).strip()
    if t.isdigit():
        return int(t)
    try:
        value = float(t)
    except ValueError:
        value = None
    if value is None or not (0.0 <= value < 1.0):  # also false for nan
        raise ValueError(f"test size {text!r} is neither a fraction in [0, 1) (such as 0.1) nor a whole count of "
                         f"records (such as 20)")
    return value
