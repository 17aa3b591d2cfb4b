"""Typed messages that workers post to the UI; one handler per event updates the screen."""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.message import Message


@dataclass
class SampleGenerated(Message):
    sample_id: int
    instruction: str
    output: str
    counters: dict = field(default_factory=dict)


@dataclass
class RoundFinished(Message):
    round_id: int | None
    counters: dict


@dataclass
class RoundFailed(Message):
    error: str



@dataclass
class ServerReady(Message):
    base_url: str
    models: list[str]
    engine: str


@dataclass
class ServerFailed(Message):
    error: str
