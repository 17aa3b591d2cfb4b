"""What is compared: held-out items, and the three contenders' prompts for them.

- base: the base model, the item's conversation as is.
- few_shot: the base model with k examples from the training records as earlier user/assistant turns (after the
  system prompt). k is fitted to the context: as many as fit beside the longest item and the answer budget, at
  most MAX_SHOTS, drawn once with the seed, the same examples for every item; the report records them.
- tuned: the trained model, the item's conversation as is.
Plus a sample of training records (memorisation vs generalisation), drawn with the seed, without the few-shot
examples.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tuitune.core.evaluation.metrics import EvalError

MAX_SHOTS = 5
TRAIN_SAMPLE = 16  # at most this many training records are scored (and never more than the held-out items)
CONTENDERS = ("base", "few_shot", "tuned")


@dataclass
class EvalItem:
    messages: list[dict]  # the conversation up to (not including) the answer to score
    reference: str

    @property
    def prompt(self) -> str:
        return self.messages[-1]["content"] if self.messages else ""


def items_from_records(records: Sequence[dict]) -> list[EvalItem]:
    """SFT records ({"messages": [...]}) -> items: everything before the last assistant turn, and that turn."""
    items = []
    for r in records:
        msgs = r.get("messages")
        if not msgs or msgs[-1].get("role") != "assistant":
            continue
        items.append(EvalItem([{"role": m["role"], "content": m["content"]} for m in msgs[:-1]], msgs[-1]["content"]))
    return items


def run_split(run_dir: Path) -> tuple[list[dict], list[dict], object]:
    """(training records, held-out records, config) of a run, split exactly as the worker split them."""
    from tuitune.core.training.config import ConfigError, TrainConfig
    from tuitune.core.training.data import DataError, read_records, split_holdout

    run_dir = Path(run_dir)
    try:
        cfg = TrainConfig.load(run_dir / "config.yaml")
        records = read_records(cfg.data or run_dir / "data.jsonl")
    except (ConfigError, DataError) as e:
        raise EvalError(f"cannot read run {run_dir.name}'s data: {e}") from None
    train, held = split_holdout(records, cfg.holdout or 0, cfg.seed)
    return train, held, cfg


def held_out_items(run_dir: Path) -> list[EvalItem]:
    """The records the training run held out (same file, size and seed as the worker used)."""
    _, held, cfg = run_split(run_dir)
    items = items_from_records(held)
    if not items:
        raise EvalError(f"run {Path(run_dir).name} has no held-out chat examples (holdout={cfg.holdout}); train "
                        f"with a held-out share of 8 records or more (--holdout 8, the form's holdout field, or holdout: 8 in "
                        f"the config), or evaluate on a file of chat records instead")
    return items


def pick_shots(train_records: Sequence[dict], items: Sequence[EvalItem], *, seed: int,
               count_tokens: Callable[[list[dict]], int], context: int, answer_budget: int,
               max_shots: int = MAX_SHOTS) -> list[EvalItem]:
    """Up to max_shots single-turn training examples, drawn with `seed`, as many as fit in `context` tokens
    beside the longest item and `answer_budget` new tokens."""
    pool = [it for it in items_from_records(train_records) if len(it.messages) <= 2]
    random.Random(seed).shuffle(pool)
    longest = max((count_tokens(it.messages) for it in items), default=0)
    room = context - longest - answer_budget
    shots: list[EvalItem] = []
    for cand in pool:
        if len(shots) >= max_shots:
            break
        cost = count_tokens(shot_turns([cand]))
        if cost <= room:
            shots.append(cand)
            room -= cost
    return shots


def shot_turns(shots: Sequence[EvalItem]) -> list[dict]:
    turns: list[dict] = []
    for s in shots:
        turns += [m for m in s.messages if m["role"] != "system"]
        turns.append({"role": "assistant", "content": s.reference})
    return turns


def with_shots(item: EvalItem, shots: Sequence[EvalItem]) -> list[dict]:
    """The item's conversation with the examples as earlier turns, after its system prompt."""
    system = [m for m in item.messages if m["role"] == "system"]
    rest = [m for m in item.messages if m["role"] != "system"]
    return system + shot_turns(shots) + rest


def train_sample(train_records: Sequence[dict], shots: Sequence[EvalItem], n: int, seed: int) -> list[EvalItem]:
    """Up to n training items (never a few-shot example), drawn with `seed`."""
    used = {(s.prompt, s.reference) for s in shots}
    pool = [it for it in items_from_records(train_records) if (it.prompt, it.reference) not in used]
    random.Random(seed + 1).shuffle(pool)
    return pool[:n]
