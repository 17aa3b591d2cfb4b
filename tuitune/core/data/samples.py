"""The Sample record: one training example plus its review state."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field, replace
from typing import Literal

Status = Literal["pending", "accepted", "rejected", "edited"]
Origin = Literal["seed", "synth", "import", "chat"]
STATUSES: tuple[str, ...] = ("pending", "accepted", "rejected", "edited")
ORIGINS: tuple[str, ...] = ("seed", "synth", "import", "chat")
# Statuses that count as "kept" for training and export.
KEPT_STATUSES: tuple[str, ...] = ("accepted", "edited")
TEXT_FIELDS: tuple[str, ...] = ("instruction", "input", "output", "system")


@dataclass
class Sample:
    """One example in Alpaca shape (instruction, input, output, system, history) plus review state."""

    instruction: str
    output: str
    input: str = ""
    system: str = ""
    history: list[tuple[str, str]] = field(default_factory=list)
    status: Status = "pending"
    rating: int | None = None
    reason: str = ""
    origin: Origin = "import"
    round_id: int | None = None
    original: dict | None = None  # the text before the first edit (kept for preference pairs)
    teacher: str = ""  # the teacher that wrote it (synthesis; "" for seeds, imports, chats)
    decided_by: str = ""  # who set its status: "human", "judge" (a bulk action), "" (pending or imported)
    id: int | None = None
    created_at: str = ""
    updated_at: str = ""

    def with_(self, **changes) -> Sample:
        return replace(self, **changes)

    # ---- formats -------------------------------------------------------------------------------
    def user_content(self) -> str:
        """The user turn as LLaMA-Factory builds it: instruction, then input on a new line."""
        return f"{self.instruction}\n{self.input}" if self.input else self.instruction

    def to_alpaca(self) -> dict:
        rec = {"instruction": self.instruction, "input": self.input, "output": self.output}
        if self.system:
            rec["system"] = self.system
        if self.history:
            rec["history"] = [[q, a] for q, a in self.history]
        return rec

    def to_messages(self, *, include_system: bool = True) -> list[dict]:
        msgs: list[dict] = []
        if self.system and include_system:
            msgs.append({"role": "system", "content": self.system})
        for q, a in self.history:
            msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        msgs += [{"role": "user", "content": self.user_content()}, {"role": "assistant", "content": self.output}]
        return msgs

    def to_openai(self) -> dict:
        return {"messages": self.to_messages()}

    def to_sharegpt(self) -> dict:
        names = {"user": "human", "assistant": "gpt"}
        conv = [{"from": names[m["role"]], "value": m["content"]} for m in self.to_messages(include_system=False)]
        rec: dict = {"conversations": conv}
        if self.system:
            rec["system"] = self.system
        return rec

    def key(self) -> str:
        """Normalised hash of everything that is trained on, for exact-duplicate detection: instruction, input,
        output, history, the record's own system prompt, and the rejected answer of a preference pair (DPO
        trains on it). Two records that differ only in their system prompt are not duplicates. (A record
        with neither system prompt nor rejected answer hashes as before schema 3.)"""
        parts = [normalise(self.instruction), normalise(self.input), normalise(self.output)]
        parts += [normalise(q) + "\x1f" + normalise(a) for q, a in self.history]
        if self.system:
            parts.append("\x1dsystem\x1d" + normalise(self.system))
        rejected = self.rejected()
        if rejected is not None:
            parts.append("\x1drejected\x1d" + normalise(rejected))
        return hashlib.sha1("\x1e".join(parts).encode()).hexdigest()

    def rejected(self) -> str | None:
        """The rejected answer when this sample is a preference pair (an edit's or an import's), else None."""
        if self.original and isinstance(self.original.get("output"), str) and self.original["output"] != self.output:
            return self.original["output"]
        return None

    def prompt_key(self) -> str:
        """Hash of the prompt side only (instruction + input): same question, any answer."""
        return hashlib.sha1((normalise(self.instruction) + "\x1e" + normalise(self.input)).encode()).hexdigest()


_WS = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Case-, width- and whitespace-insensitive form of a text (NFKC folds full-width CJK punctuation)."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()
