"""The synthesis engine's public types: round parameters, honest counters and the events a round reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from tuitune.core.data.dedup import DEFAULT_THRESHOLD
from tuitune.core.data.samples import Sample

MODES = ("samples", "inputs")


class SynthError(Exception):
    """A round that cannot start or cannot go on, with what to do next."""


@dataclass
class RoundParams:
    """What a round asks for and how. Saved with the round (without any key)."""

    n: int = 20  # samples wanted in this round
    mode: str = "samples"  # "samples" or "inputs" (teacher writes requests; a second pass answers them)
    per_request: int = 4  # samples asked for in one teacher request
    concurrency: int = 4  # requests in flight at most
    temperature: float = 0.9
    max_tokens: int = 1024  # per generation request
    answer_max_tokens: int = 512  # per answer in "inputs" mode
    examples: int = 4  # examples shown per request (rotated through seeds + accepted)
    topics: list[str] = field(default_factory=list)  # optional; request i gets topics[i % len]
    threshold: float = DEFAULT_THRESHOLD  # near-duplicate similarity (0-1] above which a sample is dropped
    min_chars: int = 2  # instruction and output shorter than this are dropped
    max_chars: int = 4000  # any field longer than this is dropped
    max_requests: int | None = None  # generation requests per run; default 3 x what is needed + concurrency
    max_consecutive_failures: int | None = None  # default 2 x concurrency + 2; then the round fails (resumable)
    use_lessons: bool = True
    seed: int = 0

    def validate(self) -> None:
        if self.n < 1:
            raise SynthError("the number of samples to generate must be at least 1")
        if self.mode not in MODES:
            raise SynthError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.per_request < 1 or self.concurrency < 1:
            raise SynthError("per-request and concurrency must be at least 1")
        if not 0 < self.threshold <= 1:
            raise SynthError(f"the near-duplicate threshold must be in (0, 1], got {self.threshold}")


COUNTER_NAMES = ("requested", "requests", "responses", "failed_requests", "cancelled_requests", "unparseable",
                 "truncated", "returned", "invalid", "too_short", "too_long", "duplicates", "near_duplicates",
                 "surplus", "answer_requests", "answer_failed", "stored", "sessions")


@dataclass
class Counters:
    """Honest accounting. Invariants (checked by tests):
    requests (generation + answer requests) = responses + failed_requests + cancelled_requests;
    returned = stored_this_run + invalid + too_short + too_long + duplicates + surplus + answer_failed
    (summed over sessions for a resumed round). near_duplicates is the part of duplicates that was not exact."""

    requested: int = 0
    requests: int = 0
    responses: int = 0
    failed_requests: int = 0
    cancelled_requests: int = 0
    unparseable: int = 0  # responses with no usable JSON
    truncated: int = 0  # responses cut off (max_tokens) whose complete items were kept
    returned: int = 0  # records found in the responses
    invalid: int = 0  # records without instruction/output
    too_short: int = 0
    too_long: int = 0
    duplicates: int = 0
    near_duplicates: int = 0
    surplus: int = 0  # good records beyond what the round needed
    answer_requests: int = 0
    answer_failed: int = 0
    stored: int = 0
    sessions: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> Counters:
        """Counters read back from a round's row. Requests that a killed process left in flight (saved by an
        older version) are counted as cancelled, so the invariant holds on resume."""
        c = cls(**{k: int(v) for k, v in d.items() if k in COUNTER_NAMES and isinstance(v, int | float)})
        c.cancelled_requests += c.in_flight
        return c

    @property
    def in_flight(self) -> int:
        """Requests counted but not yet answered, failed or cancelled."""
        return max(0, self.requests - self.responses - self.failed_requests - self.cancelled_requests)

    def to_dict(self) -> dict:
        return asdict(self)

    def saved(self) -> dict:
        """What goes to the database while requests may be in flight: they are saved as cancelled (what they
        become if the process dies now), so the saved counters add up at every moment, also after kill -9."""
        d = asdict(self)
        d["cancelled_requests"] += self.in_flight
        return d


# ---- events -------------------------------------------------------------------------------------------

@dataclass
class RoundStarted:
    round_id: int
    requested: int
    already_stored: int
    resumed: bool
    prompt: str


@dataclass
class SampleStored:
    sample: Sample
    counters: Counters


@dataclass
class SampleDropped:
    reason: str  # invalid / too_short / too_long / duplicate / near_duplicate / surplus / answer_failed
    instruction: str
    counters: Counters


@dataclass
class RequestFailed:
    error: str
    counters: Counters


@dataclass
class RoundFinished:
    round_id: int
    status: str  # finished / incomplete / failed / cancelled
    counters: Counters
    message: str = ""


Event = RoundStarted | SampleStored | SampleDropped | RequestFailed | RoundFinished
