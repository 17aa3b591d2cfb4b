"""The verdict rules on synthetic per-item score tables (one per verdict), and the bootstrap interval."""

from __future__ import annotations

import numpy as np
import pytest

from tuitune.core.evaluation import verdict as vd


def _table(n: int, base: float, few: float, tuned: float, spread: float = 4.0, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    return {name: list(np.clip(mean + rng.normal(0, spread, n), 0, 100))
            for name, mean in (("base", base), ("few_shot", few), ("tuned", tuned))}


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_items():
    rng = np.random.default_rng(0)
    a, b = rng.normal(60, 10, 200), rng.normal(50, 10, 200)
    wide = vd.bootstrap_mean_diff(a[:10], b[:10])
    narrow = vd.bootstrap_mean_diff(a, b)
    assert narrow.low < narrow.mean < narrow.high and wide.low < wide.mean < wide.high
    assert narrow.mean == pytest.approx(float((a - b).mean()), abs=0.01)
    assert 5 < narrow.low and narrow.high < 15  # the true difference (10) is inside, and the interval is tight
    assert (narrow.high - narrow.low) < (wide.high - wide.low) / 2


def test_bootstrap_is_paired_and_reproducible():
    # every item gains exactly 3 points: a paired interval has no width, whatever the items' spread
    a = [10.0, 90.0, 40.0, 70.0, 20.0]
    iv = vd.bootstrap_mean_diff([x + 3 for x in a], a)
    assert (iv.mean, iv.low, iv.high) == (3.0, 3.0, 3.0)
    assert vd.bootstrap_mean_diff(a, a[::-1]) == vd.bootstrap_mean_diff(a, a[::-1])
    with pytest.raises(ValueError, match="paired"):
        vd.bootstrap_mean_diff([1.0], [1.0, 2.0])


def test_tuned_wins_names_the_gain_and_interval():
    v = vd.decide(_table(15, base=20, few=30, tuned=70))
    assert v.code == "tuned_wins"
    assert v.vs_few_shot.low > vd.MIN_GAIN and v.vs_base.low > v.vs_few_shot.low
    assert "tuned beats base and few-shot on 15 held-out items" in v.text and "CI" in v.text
    assert f"{v.vs_few_shot.mean:+.1f}" in v.text


def test_no_better_than_few_shot():
    v = vd.decide(_table(40, base=20, few=60, tuned=60.5, spread=1.0))
    assert v.code == "few_shot_enough" and "more or better data, not training, is the lever" in v.text
    worse = vd.decide(_table(40, base=20, few=70, tuned=50))  # few-shot clearly better than training
    assert worse.code == "few_shot_enough"


def test_memorised_training_set_but_not_held_out():
    held = _table(15, base=20, few=30, tuned=31)
    train = {"tuned": [95.0] * 15, "base": [22.0] * 15}
    v = vd.decide(held, train)
    assert v.code == "memorised" and "fewer epochs / more data" in v.text and v.gap > vd.MEMORISATION_GAP
    # the same train scores, but the base model finds the training records just as much easier: not memorised
    easy = {"tuned": [95.0] * 15, "base": [90.0] * 15}
    assert vd.decide(held, easy).code != "memorised"
    # a clear win on held-out stays a win even with a train/held-out gap
    assert vd.decide(_table(15, 20, 30, 70), {"tuned": [100.0] * 15, "base": [20.0] * 15}).code == "tuned_wins"


def test_too_few_items_or_noisy_is_inconclusive():
    few = vd.decide(_table(3, base=10, few=10, tuned=90))
    assert few.code == "inconclusive" and "3 held-out items" in few.text and few.vs_base is None
    noisy = vd.decide(_table(6, base=30, few=30, tuned=38, spread=25.0, seed=3))
    assert noisy.code == "inconclusive" and "too few held-out items to tell" in noisy.text
    assert noisy.vs_few_shot.low < 0 < noisy.vs_few_shot.high


def test_beats_base_but_not_clearly_few_shot_says_so():
    """Measured on alpaca_zh_demo (bench/learned.py): vs base +4.2 (CI +1.9 to +7.0), vs few-shot +2.8 (CI -0.5 to
    +6.5). Inconclusive, but not "no significant difference": the gain over the base model is significant."""
    v = vd.decide(_table(27, base=2, few=5, tuned=8, spread=6.0, seed=0))
    assert v.vs_base.low > 0 and v.vs_base.mean >= vd.MIN_GAIN
    assert v.vs_few_shot.low < 0 < v.vs_few_shot.high or v.vs_few_shot.mean < vd.MIN_GAIN
    assert v.code == "inconclusive"
    assert v.text.startswith("tuned beats base") and "not clearly few-shot" in v.text
    assert "no significant difference" not in v.text


def test_no_gain_over_base_when_few_shot_hurts():
    v = vd.decide(_table(40, base=50, few=20, tuned=50.5, spread=1.0))
    assert v.code == "no_gain" and "no better than the base model" in v.text


def test_verdict_json_states_its_thresholds():
    data = vd.decide(_table(15, 20, 30, 70)).to_json()
    assert data["thresholds"]["min_gain"] == vd.MIN_GAIN and data["thresholds"]["confidence"] == 0.95
    assert set(data["vs_base"]) == {"mean", "low", "high"}
