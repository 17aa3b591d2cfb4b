"""The steps the worker runs after a run is trained, saved and merged: the engine parity check and the held-out
verdict. They are evaluation's (the floor above training, which training must not import), so the worker does not
import them: it hands each step what the run produced (`Trained`) and calls it by its name, "module:function",
resolved when the run gets there. A step that raises fails the run, as a failing verdict always did.

`python -m tuitune.core.training.worker RUN_DIR` (or under accelerate/torchrun) runs STEPS; a caller of
`worker.run(run_dir, after=...)` may give its own (tests: none, or a fake)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tuitune.core.training.config import TrainConfig
    from tuitune.core.training.events import EventWriter
    from tuitune.core.training.run_dir import RunDir
    from tuitune.settings import Settings

# In order: parity (when merged), then the verdict (when `eval`); each step decides from the config whether it runs.
STEPS = ("tuitune.core.evaluation.after_training:after_training",)


@dataclass
class Trained:
    """What a step after training gets: the run folder, its config, the records and their split, the events to
    write, whether the run trained on CUDA, and the settings of the worker's process."""

    run: RunDir
    cfg: TrainConfig
    events: EventWriter
    records: list[dict]
    train: list[dict]
    held: list[dict]
    cuda: bool
    settings: Settings


def resolve(ref: str) -> Callable[[Trained], None]:
    """The function a "module:function" name stands for (LookupError naming it when there is none)."""
    module, _, name = ref.partition(":")
    try:
        return getattr(importlib.import_module(module), name) if module and name else _missing(ref)
    except AttributeError:
        return _missing(ref)


def _missing(ref: str):
    raise LookupError(f"after-training step {ref!r}: no such function (expected 'module:function')")


def run_steps(trained: Trained, steps: Sequence[str | Callable[[Trained], None]] = STEPS) -> None:
    for step in steps:
        (resolve(step) if isinstance(step, str) else step)(trained)
