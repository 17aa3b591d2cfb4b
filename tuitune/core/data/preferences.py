"""Preference pairs from review: (edited, original) and (accepted, rejected) answers to the same prompt."""

from __future__ import annotations

from dataclasses import dataclass

from tuitune.core.data.samples import Sample
from tuitune.core.data.store import Store
from tuitune.core.data.task_system import kept_samples


@dataclass
class PreferencePair:
    prompt: Sample  # instruction/input/system/history of the prompt; its output is the chosen answer
    chosen: str
    rejected: str

    def to_llamafactory(self) -> dict:
        rec = {"instruction": self.prompt.instruction, "input": self.prompt.input,
               "chosen": self.chosen, "rejected": self.rejected}
        if self.prompt.system:
            rec["system"] = self.prompt.system
        if self.prompt.history:
            rec["history"] = [[q, a] for q, a in self.prompt.history]
        return rec

    def to_trl(self) -> dict:
        msgs = self.prompt.to_messages()[:-1]  # everything up to the answer
        return {"prompt": msgs, "chosen": [{"role": "assistant", "content": self.chosen}],
                "rejected": [{"role": "assistant", "content": self.rejected}]}


def preference_pairs(store: Store, *, task_system: bool = True) -> list[PreferencePair]:
    """An edit yields (edited, original); a rejected answer yields (kept answer, rejected) for each kept
    sample with the same prompt. With `task_system`, a prompt without its own system prompt gets the task's."""
    pairs: list[PreferencePair] = []
    kept_by_prompt: dict[str, list[Sample]] = {}
    samples = kept_samples(store) if task_system else store.training_samples()
    for s in samples:
        kept_by_prompt.setdefault(s.prompt_key(), []).append(s)
        if s.original and s.original.get("output", s.output) != s.output:
            pairs.append(PreferencePair(s, s.output, s.original["output"]))
    for r in store.samples(status="rejected"):
        for k in kept_by_prompt.get(r.prompt_key(), []):
            if k.output != r.output:
                pairs.append(PreferencePair(k, k.output, r.output))
    return pairs
