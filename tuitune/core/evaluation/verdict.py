"""The verdict: did training pay, compared with the base model and with few-shot prompting?

Computed from numbers, not a gut call. The measure is chrF per held-out item (sentence chrF, 0-100). For tuned
vs each other contender the paired difference per item is resampled (bootstrap over items, BOOTSTRAP_SAMPLES
draws, fixed seed) into a 95% confidence interval of the mean difference. Rules, in order:

1. `tuned_wins`: tuned beats base AND few-shot: the interval's low end is above 0 and the mean gain is at least
   MIN_GAIN chrF points, for both.
2. `memorised`: the tuned model's chrF on a sample of its training records is at least MEMORISATION_GAP points
   above its held-out chrF, beyond the base model's own train/held-out gap (so easy training records do not
   count as memorised): fewer epochs / more data.
3. `few_shot_enough`: the interval vs few-shot lies below MIN_GAIN (training bought no meaningful gain over
   prompting the base model with a few of the training records): more or better data, not training, is the lever.
4. `no_gain`: the same vs the base model (few-shot prompting hurt, and training did not help either).
5. `inconclusive`: otherwise, or with fewer than MIN_ITEMS held-out items: too few items to tell. When tuned
   beats base but the interval vs few-shot straddles MIN_GAIN, the words say so (better than base, not clearly
   better than few-shot) instead of "no significant difference".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

MIN_ITEMS = 5
MIN_GAIN = 2.0  # chrF points: a smaller mean gain is not "better", however sure
MEMORISATION_GAP = 20.0  # chrF points, train sample minus held-out, beyond the base model's own gap
BOOTSTRAP_SAMPLES = 2000
CONFIDENCE = 0.95
SEED = 0

THRESHOLDS = {"measure": "sentence chrF per held-out item (0-100)", "min_items": MIN_ITEMS, "min_gain": MIN_GAIN,
              "memorisation_gap": MEMORISATION_GAP, "bootstrap_samples": BOOTSTRAP_SAMPLES,
              "confidence": CONFIDENCE}


@dataclass
class Interval:
    mean: float
    low: float
    high: float

    def words(self) -> str:
        return f"{self.mean:+.1f}, {round(100 * CONFIDENCE)}% CI {self.low:+.1f} to {self.high:+.1f}"


@dataclass
class Verdict:
    code: str  # tuned_wins | memorised | few_shot_enough | no_gain | inconclusive
    text: str
    n: int
    vs_base: Interval | None = None
    vs_few_shot: Interval | None = None
    gap: float | None = None  # tuned train-sample chrF minus held-out chrF, minus the base model's gap
    thresholds: dict = field(default_factory=lambda: dict(THRESHOLDS))

    def to_json(self) -> dict:
        return asdict(self)


def bootstrap_mean_diff(a: Sequence[float], b: Sequence[float], *, samples: int = BOOTSTRAP_SAMPLES,
                        confidence: float = CONFIDENCE, seed: int = SEED) -> Interval:
    """Mean of a - b over paired items, with a percentile bootstrap interval (items resampled with replacement)."""
    import numpy as np

    if len(a) != len(b) or not len(a):
        raise ValueError(f"paired scores needed: got {len(a)} and {len(b)}")
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(samples, len(d)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    return Interval(round(float(d.mean()), 2), round(float(np.percentile(means, tail)), 2),
                    round(float(np.percentile(means, 100 - tail)), 2))


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def decide(held: dict[str, Sequence[float]], train: dict[str, Sequence[float]] | None = None) -> Verdict:
    """held: per-item held-out chrF for "base", "few_shot" and "tuned" (paired, same items); train: the same
    for "tuned" and "base" on a sample of training records (None: no memorisation check)."""
    n = len(held["tuned"])
    if n < MIN_ITEMS:
        return Verdict("inconclusive", f"no significant difference can be shown on {n} held-out items: too few "
                       f"to tell (at least {MIN_ITEMS} are needed; hold out more records)", n)
    vb = bootstrap_mean_diff(held["tuned"], held["base"])
    vf = bootstrap_mean_diff(held["tuned"], held["few_shot"])
    gap = None
    if train and train.get("tuned") and train.get("base"):
        own = _mean(train["tuned"]) - _mean(held["tuned"])
        base_gap = _mean(train["base"]) - _mean(held["base"])
        gap = round(own - max(0.0, base_gap), 2)
    v = Verdict("inconclusive", "", n, vb, vf, gap)

    def beats(i: Interval) -> bool:
        return i.low > 0 and i.mean >= MIN_GAIN

    if beats(vb) and beats(vf):
        v.code = "tuned_wins"
        v.text = (f"tuned beats base and few-shot on {n} held-out items (chrF vs few-shot {vf.words()}; "
                  f"vs base {vb.words()})")
    elif gap is not None and gap >= MEMORISATION_GAP:
        v.code = "memorised"
        v.text = (f"memorised the training set but not the held-out: chrF {gap:.1f} points higher on training "
                  f"records than on held-out ones: fewer epochs / more data")
    elif vf.high < MIN_GAIN:
        v.code = "few_shot_enough"
        v.text = (f"no better than few-shot prompting (chrF vs few-shot {vf.words()} on {n} items): more or "
                  f"better data, not training, is the lever")
    elif vb.high < MIN_GAIN:
        v.code = "no_gain"
        v.text = (f"no better than the base model (chrF vs base {vb.words()} on {n} items): more or better data, "
                  f"or more steps / a higher learning rate")
    elif beats(vb):  # better than the base model, not clearly better than prompting it with examples
        v.text = (f"tuned beats base (chrF {vb.words()}) but not clearly few-shot prompting (chrF {vf.words()}) "
                  f"on {n} held-out items: more held-out items would tell; try few-shot prompting too")
    else:
        v.text = (f"no significant difference on {n} items: too few held-out items to tell (chrF vs few-shot "
                  f"{vf.words()}; vs base {vb.words()})")
    return v
