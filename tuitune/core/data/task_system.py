"""The task's system prompt in the data: a record without its own system prompt gets the task's.

Used by every export format and by the training data (so eval, which reads the run's data, sees it too);
chat sessions start with the same prompt. A record's own system prompt always wins.
"""

from __future__ import annotations

from tuitune.core.data.samples import Sample
from tuitune.core.data.store import Store


def with_task_system(samples: list[Sample], system: str) -> list[Sample]:
    """The samples, each without a system prompt of its own given `system` (unchanged when it is empty)."""
    if not system:
        return list(samples)
    return [s if s.system else s.with_(system=system) for s in samples]


def kept_samples(store: Store, *, include_seeds: bool = True) -> list[Sample]:
    """Seeds + accepted samples, as training and export use them: with the task's system prompt."""
    return with_task_system(store.training_samples(include_seeds=include_seeds), store.get_task().system_prompt)
