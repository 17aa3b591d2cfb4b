"""Judge-vs-reviewer statistics (tuitune.core.curation.agreement) on made-up tables with hand-computed answers."""

from __future__ import annotations

import json
import math
import time
from statistics import NormalDist

import pytest

from tuitune.core.curation.agreement import (
    Decision,
    DecisionError,
    agreement,
    bulk_offers,
    kappa_from_cells,
    not_enough_sentence,
    summary_line,
)

Z = NormalDist().inv_cdf(0.975)  # 1.95996...


def wilson_closed_form(k: int, n: int, z: float = Z) -> tuple[float, float]:
    """Wilson score interval written out: (k + z²/2)/(n + z²) ± z/(n + z²)·sqrt(k(n-k)/n + z²/4)."""
    centre = (k + z * z / 2) / (n + z * z)
    half = z / (n + z * z) * math.sqrt(k * (n - k) / n + z * z / 4)
    return centre - half, centre + half


def table(**counts) -> list[tuple[int, bool]]:
    """table(a5=13, r4=5, ...) -> that many (score, accepted) decisions: aN accepted at score N, rN rejected."""
    out = []
    for key, count in counts.items():
        out += [(int(key[1]), key[0] == "a")] * count
    return out


# The kappa table: 50 decisions, 25 accepted, 25 rejected.
#   score 5: 13 accepted,  0 rejected
#   score 4:  7 accepted,  5 rejected
#   score 3:  5 accepted,  8 rejected
#   score 2:  0 accepted, 12 rejected
# Rule "judge >= T means accept", agreements (accepted at >= T plus rejected below T):
#   T=2: 25 + 0 = 25 -> 0.50;  T=3: 25 + 12 = 37 -> 0.74;  T=4: 20 + 20 = 40 -> 0.80;  T=5: 13 + 25 = 38 -> 0.76
# Best T = 4. At T=4 the (judge, human) cells are accept/accept 13+7 = 20, accept/reject 5, reject/accept 5,
# reject/reject 8+12 = 20: p_o = 40/50 = 0.8, p_e = (25·25 + 25·25)/50² = 0.5, kappa = (0.8-0.5)/(1-0.5) = 0.6.
KAPPA_TABLE = table(a5=13, a4=7, r4=5, a3=5, r3=8, r2=12)


def test_kappa_best_threshold_and_confusion_by_hand():
    a = agreement(KAPPA_TABLE)
    assert (a.n, a.n_accepted, a.n_rejected) == (50, 25, 25)
    assert a.accuracy == {2: 0.5, 3: 0.74, 4: 0.8, 5: 0.76}
    assert a.best_threshold == 4 and a.agreement == 0.8
    assert a.kappa == pytest.approx(0.6, abs=1e-12)
    assert a.kappa_note is None
    assert a.confusion == {"accept_accept": 20, "accept_reject": 5, "reject_accept": 5, "reject_reject": 20}
    assert a.by_score == {1: (0, 0), 2: (0, 12), 3: (5, 8), 4: (7, 5), 5: (13, 0)}


def test_ties_go_to_the_lower_threshold():
    # Scores 1 and 5 only: every T in 2..5 splits the same way, so all four accuracies tie at (20+20)/50 = 0.8.
    a = agreement(table(a5=20, r5=5, a1=5, r1=20))
    assert a.accuracy == {2: 0.8, 3: 0.8, 4: 0.8, 5: 0.8}
    assert a.best_threshold == 2
    # Same 20/5/5/20 cells as the kappa table: kappa 0.6 again.
    assert a.kappa == pytest.approx(0.6, abs=1e-12)
    # A tie between 3 and 4 only: score 3 holds 4 accepted and 4 rejected, so moving T from 3 to 4 wins 4, loses 4.
    # 30 decisions, 16 accepted (10 at 5, 2 at 4, 4 at 3); rejected 4 at 3, 10 at 2.
    #   T=2: 16 + 0 = 16;  T=3: 16 + 10 = 26;  T=4: 12 + 14 = 26;  T=5: 10 + 14 = 24
    b = agreement(table(a5=10, a4=2, a3=4, r3=4, r2=10))
    assert [round(b.accuracy[t] * 30) for t in (2, 3, 4, 5)] == [16, 26, 26, 24]
    assert b.best_threshold == 3


def test_precision_and_wilson_interval_match_the_closed_form():
    a = agreement(KAPPA_TABLE)
    # accept at >= 4: 20 accepted of 7+5+13 = 25 decisions scored 4 or 5.
    p = a.precision_accept[4]
    assert (p.k, p.n, p.precision) == (20, 25, 0.8)
    low, high = wilson_closed_form(20, 25)
    assert (p.low, p.high) == (pytest.approx(low, abs=1e-9), pytest.approx(high, abs=1e-9))
    # By hand: centre (20 + 1.92)/(25 + 3.84) = 0.760, half 1.96/28.84·sqrt(20·5/25 + 0.96) = 0.151.
    assert (p.low, p.high) == (pytest.approx(0.609, abs=1e-3), pytest.approx(0.911, abs=1e-3))
    # reject at <= 3: 8 + 12 = 20 rejected of 5+8+12 = 25 decisions scored 3 or less.
    r = a.precision_reject[3]
    assert (r.k, r.n) == (20, 25) and (r.low, r.high) == (pytest.approx(low), pytest.approx(high))
    # Every decision: 25 of 50 either way. Nothing is scored 1, so "judge <= 1" covers no decision.
    assert (a.precision_accept[1].k, a.precision_accept[1].n) == (25, 50)
    assert (a.precision_reject[5].k, a.precision_reject[5].n) == (25, 50)
    empty = a.precision_reject[1]
    assert (empty.n, empty.precision, empty.low, empty.high) == (0, None, None, None)
    # 13 of 13: Wilson's lower bound is n/(n + z²) = 13/16.84 = 0.772.
    assert a.precision_accept[5].low == pytest.approx(13 / (13 + Z * Z), abs=1e-9)


def test_vectorised_kappa_agrees_with_sklearn():
    import numpy as np
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(7)
    for _ in range(50):
        aa, ar, ra, rr = (int(x) for x in rng.integers(0, 15, size=4))
        if min(aa + ar, ra + rr, aa + ra, ar + rr) == 0:
            assert math.isnan(float(kappa_from_cells(aa, ar, ra, rr)))
            continue
        judge = [1] * (aa + ar) + [0] * (ra + rr)
        human = [1] * aa + [0] * ar + [1] * ra + [0] * rr
        assert float(kappa_from_cells(aa, ar, ra, rr)) == pytest.approx(cohen_kappa_score(human, judge), abs=1e-12)


def test_bootstrap_interval_is_seeded_and_holds_the_estimate():
    a = agreement(KAPPA_TABLE, seed=3)
    assert a.kappa_low < a.kappa < a.kappa_high
    assert agreement(KAPPA_TABLE, seed=3).to_dict() == a.to_dict()
    assert (agreement(KAPPA_TABLE, seed=4).kappa_low, agreement(KAPPA_TABLE, seed=4).kappa_high) != \
        (a.kappa_low, a.kappa_high)


def test_multinomial_bootstrap_matches_resampling_decisions():
    """Drawing the four cell counts from a multinomial is resampling decisions with replacement: a plain
    index-resampling bootstrap of the same table gives nearly the same interval."""
    import numpy as np

    a = agreement(KAPPA_TABLE, n_boot=4000)
    judge = np.array([s >= 4 for s, _ in KAPPA_TABLE])
    human = np.array([acc for _, acc in KAPPA_TABLE])
    idx = np.random.default_rng(11).integers(0, len(judge), size=(4000, len(judge)))
    j, h = judge[idx], human[idx]
    k = kappa_from_cells((j & h).sum(1), (j & ~h).sum(1), (~j & h).sum(1), (~j & ~h).sum(1))
    low, high = np.quantile(k[~np.isnan(k)], [0.025, 0.975])
    assert a.kappa_low == pytest.approx(low, abs=0.04) and a.kappa_high == pytest.approx(high, abs=0.04)


def test_interval_dropped_when_most_resamples_are_undefined():
    # Three decisions: (judge, human) accept/accept, accept/reject, reject/accept. p_o = 1/3,
    # p_e = (2·2 + 1·1)/9 = 5/9, kappa = (1/3 - 5/9)/(4/9) = -0.5. A resample of 3 is defined only if it holds the
    # accept/reject one (your only reject) and the reject/accept one (the judge's only reject):
    # 1 - 2·(2/3)³ + (1/3)³ = 12/27 = 0.44 < 1/2 of resamples, so there is no interval.
    a = agreement([(5, True), (5, False), (1, True)])
    assert a.kappa == pytest.approx(-0.5)
    assert a.kappa_low is None and a.kappa_high is None


def test_all_accepted():
    a = agreement(table(a5=10, a4=10, a3=10, a1=10))
    assert a.kappa is None and a.kappa_low is None and a.kappa_note == "undefined: every decision was accept"
    # Accepting more is always right: T=2 agrees on 30 of 40.
    assert a.best_threshold == 2 and a.agreement == 0.75
    assert a.confusion == {"accept_accept": 30, "accept_reject": 0, "reject_accept": 10, "reject_reject": 0}
    assert summary_line(a) == "judge vs you: 75% agree at ≥ 2 · κ undefined: every decision was accept · 40 decisions"
    json.dumps(a.to_dict(), allow_nan=False)


def test_all_rejected():
    a = agreement(table(r5=5, r4=10, r2=10, r1=10))
    assert a.kappa is None and a.kappa_note == "undefined: every decision was reject"
    assert a.best_threshold == 5 and a.agreement == 30 / 35
    assert a.confusion == {"accept_accept": 0, "accept_reject": 5, "reject_accept": 0, "reject_reject": 30}
    # precision_accept is 0 of n, a real (defined) zero with a Wilson interval from 0.
    p = a.precision_accept[5]
    assert (p.k, p.n, p.precision, p.low) == (0, 5, 0.0, pytest.approx(0.0, abs=1e-12))
    json.dumps(a.to_dict(), allow_nan=False)


def test_one_score_only():
    # All 30 scored 3, 20 accepted: T=2 and T=3 accept all (20/30), T=4 and T=5 reject all (10/30): tie -> 2.
    a = agreement(table(a3=20, r3=10))
    assert a.accuracy == {2: 20 / 30, 3: 20 / 30, 4: 10 / 30, 5: 10 / 30}
    assert a.best_threshold == 2
    assert a.kappa is None and a.kappa_note == "undefined: the judge scored every decision ≥ 2"
    assert a.confusion == {"accept_accept": 20, "accept_reject": 10, "reject_accept": 0, "reject_reject": 0}
    # Mostly rejected: T=4 (tie with 5) rejects all.
    b = agreement(table(a3=10, r3=20))
    assert b.best_threshold == 4
    assert b.kappa_note == "undefined: the judge scored every decision below 4"
    json.dumps(b.to_dict(), allow_nan=False)


def test_empty():
    a = agreement([])
    assert (a.n, a.best_threshold, a.agreement, a.kappa, a.confusion) == (0, None, None, None, None)
    assert a.kappa_note == "undefined: no decisions yet"
    assert a.accuracy == {2: None, 3: None, 4: None, 5: None}
    assert all(p.n == 0 and p.precision is None for p in (*a.precision_accept.values(), *a.precision_reject.values()))
    assert (a.enough, a.needed) == (False, 30)
    assert bulk_offers(a, [5, 5]) == []
    assert summary_line(a) == ("the judge's numbers need 30 more reviewed samples (0 of 30) before a bulk action is "
                               "offered")
    assert summary_line(agreement([], min_decisions=0)) == "judge vs you: no decisions yet"
    json.dumps(a.to_dict(), allow_nan=False)


def test_below_min_decisions_offers_nothing():
    a = agreement(table(a5=18))
    assert (a.enough, a.needed) == (False, 12)
    assert bulk_offers(a, [5, 5, 5], min_precision=0.1, min_support=1) == []
    expected = "the judge's numbers need 12 more reviewed samples (18 of 30) before a bulk action is offered"
    assert not_enough_sentence(a) == expected and summary_line(a) == expected
    assert not_enough_sentence(agreement(table(a5=29))).startswith("the judge's numbers need 1 more reviewed sample (")
    b = agreement(table(a5=30))
    assert (b.enough, b.needed, not_enough_sentence(b)) == (True, 0, "")


def test_to_dict_is_json_without_nan():
    for decisions in (KAPPA_TABLE, [], table(a5=3), [(5, True), (5, False), (1, True)]):
        d = agreement(decisions).to_dict()
        assert json.loads(json.dumps(d, allow_nan=False)) == d


def test_summary_line():
    a = agreement(KAPPA_TABLE, seed=0)
    assert summary_line(a) == (
        f"judge vs you: 80% agree at ≥ 4 · κ 0.60 ({a.kappa_low:.2f}–{a.kappa_high:.2f}) · 50 decisions")
    # A negative kappa is written with a minus sign, not a hyphen that would read like the interval's dash.
    b = agreement([(5, True), (5, False), (1, True)], min_decisions=3)
    assert summary_line(b) == "judge vs you: 33% agree at ≥ 2 · κ −0.50 (no interval) · 3 decisions"


# The offers table: 110 decisions.
#   score 5: 40 accepted;  score 4: 10 accepted, 10 rejected;  score 3: 5 accepted, 5 rejected;  score 1: 40 rejected
# accept at >= 5: 40/40, Wilson low = 40/(40 + z²) = 40/43.84 = 0.912 >= 0.9;  at >= 4: 50/60, low ~0.72 (fails)
# reject at <= 2: 40/40 (nothing scored 2), low 0.912;  at <= 3: 45/50 = 0.9, low ~0.79 (fails)
OFFERS_TABLE = table(a5=40, a4=10, r4=10, a3=5, r3=5, r1=40)
PENDING = [5, 5, 5, 4, 3, 1, 1, 2]  # >= 5: 3 samples; <= 2: 3 samples


def test_offers_by_hand():
    a = agreement(OFFERS_TABLE)
    assert a.precision_accept[5].low == pytest.approx(40 / (40 + Z * Z)) and a.precision_accept[5].low >= 0.9
    assert a.precision_accept[4].low < 0.9 and a.precision_reject[3].low < 0.9
    accept, reject = bulk_offers(a, PENDING)
    assert (accept.action, accept.threshold, accept.count, accept.support) == ("accept", 5, 3, 40)
    assert accept.sentence == ("accept the 3 pending samples scored ≥ 5 (precision at 5 on your 40 decisions: 1.00, "
                               "95% interval 0.91–1.00)")
    assert (reject.action, reject.threshold, reject.count, reject.support) == ("reject", 2, 3, 40)
    assert reject.sentence == ("reject the 3 pending samples scored ≤ 2 (precision at 2 on your 40 decisions: 1.00, "
                               "95% interval 0.91–1.00)")
    json.dumps([o.to_dict() for o in (accept, reject)], allow_nan=False)


def test_offer_only_when_the_lower_bound_passes():
    # 30 of 30 at score 5: precision 1.00 but Wilson low = 30/33.84 = 0.887 < 0.9: no accept offer.
    a = agreement(table(a5=30, a4=10, r4=10, r1=40))
    assert a.precision_accept[5].precision == 1.0 and a.precision_accept[5].low < 0.9
    assert [o.action for o in bulk_offers(a, PENDING)] == ["reject"]
    # ... and it passes a lower bar, 0.88.
    assert [o.action for o in bulk_offers(a, PENDING, min_precision=0.88)] == ["accept", "reject"]
    # Support: 40 decisions behind each offer; asking for 41 drops both.
    assert bulk_offers(agreement(OFFERS_TABLE), PENDING, min_support=41) == []


def test_offer_needs_pending_samples_it_applies_to():
    a = agreement(OFFERS_TABLE)
    assert [o.action for o in bulk_offers(a, [4, 3, 1])] == ["reject"]  # nothing pending is scored 5
    assert [o.action for o in bulk_offers(a, [5, 4, 3])] == ["accept"]  # nothing pending is scored <= 2
    assert bulk_offers(a, []) == []


def test_reject_offer_mirror():
    # The offers table with accept and reject swapped and scores mirrored (s -> 6 - s):
    #   score 1: 40 rejected; score 2: 10/10; score 3: 5/5; score 5: 40 accepted  -> same offers, reject at <= 1.
    mirrored = [(6 - s, not acc) for s, acc in OFFERS_TABLE]
    a = agreement(mirrored)
    offers = bulk_offers(a, [6 - s for s in PENDING])
    assert [(o.action, o.threshold, o.count) for o in offers] == [("accept", 4, 3), ("reject", 1, 3)]


def test_offers_never_cover_the_same_score():
    # score 5: 100 accepted; score 3: 1 accepted, 1 rejected; score 1: 100 rejected.
    # Alone, accept passes first at >= 2 (101/102, low ~0.95) and reject last at <= 4 (101/102): both would cover
    # 2..4. Then accept moves above 4 (>= 5: 100/100) and reject below 2 (<= 1: 100/100).
    a = agreement(table(a5=100, a3=1, r3=1, r1=100))
    assert a.precision_accept[2].low >= 0.9 and a.precision_reject[4].low >= 0.9
    offers = bulk_offers(a, [1, 2, 3, 4, 5])
    assert [(o.action, o.threshold, o.count) for o in offers] == [("accept", 5, 1), ("reject", 1, 1)]


@pytest.mark.parametrize(("bad", "message"), [
    ([(3, True), (0, True)], r"decision 1: score 0 is outside 1\.\.5"),
    ([(6, False)], r"decision 0: score 6 is outside 1\.\.5"),
    ([(3, True), (3, True), (3, 1)], r"decision 2: accepted must be True or False, got 1"),
    ([(3, "yes")], r"decision 0: accepted must be True or False"),
    ([(True, True)], r"decision 0: score must be an integer 1\.\.5, got True"),
    ([(2.5, True)], r"decision 0: score must be an integer"),
    ([(3, True), "x"], r"decision 1: expected Decision or \(score, accepted\)"),
])
def test_invalid_decisions_name_the_index(bad, message):
    with pytest.raises(ValueError, match=message) as err:
        agreement(bad)
    assert isinstance(err.value, DecisionError)


def test_decision_dataclass_validates_and_mixes_with_tuples():
    with pytest.raises(ValueError, match="score 0 is outside"):
        Decision(0, True)
    with pytest.raises(ValueError, match="accepted must be True or False"):
        Decision(3, None)
    assert agreement([Decision(5, True), (1, False)]).kappa == pytest.approx(1.0)


def test_invalid_pending_score_names_the_index():
    with pytest.raises(ValueError, match=r"pending score 2: score 7 is outside 1\.\.5"):
        bulk_offers(agreement(OFFERS_TABLE), [5, 5, 7])


def test_thousand_decisions_are_fast():
    import random

    rng = random.Random(5)
    decisions = [(s, rng.random() < s / 5.5) for s in (rng.randint(1, 5) for _ in range(1000))]
    agreement(decisions[:50])  # imports (sklearn, scipy) happen once, outside the timing
    start = time.perf_counter()
    a = agreement(decisions, n_boot=2000)
    took = time.perf_counter() - start
    assert a.n == 1000 and a.kappa_low < a.kappa < a.kappa_high
    assert took < 1.0, took
