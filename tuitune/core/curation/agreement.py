"""How far the LLM judge's 1-5 score agrees with your own accept/reject decisions, and the bulk actions it earns.

Input: the decisions you made in review, each (judge score 1..5, accepted: bool; an edit counts as accepted).
Everything below is computed from the 5x2 table of (score, your decision):

- accuracy[T], T in 2..5: the share of decisions where the rule "judge >= T means accept" agrees with you.
  best_threshold is the T with the highest accuracy (ties: the lower T); `agreement` is that accuracy.
- kappa: Cohen's kappa between that rule and you (sklearn), i.e. agreement beyond what two coin-flippers with the
  same accept rates would reach. Undefined (None, with `kappa_note`) when you or the rule used one answer only.
  Its interval is a seeded percentile bootstrap over decisions: resampling n decisions with replacement from a
  2x2 table is the same as drawing the four cell counts from a multinomial, so each resample costs O(1).
  Resamples where kappa is undefined are dropped; when fewer than half remain there is no interval.
- precision_accept[T], T in 1..5: P(you accepted | judge >= T), k of n, with a Wilson interval;
  precision_reject[T]: P(you rejected | judge <= T) likewise. n = 0 gives precision None.
- bulk offers: only with at least `min_decisions` decisions; "accept all pending scored >= T" at the lowest T whose
  Wilson LOWER bound reaches `min_precision` on at least `min_support` decisions, "reject all pending scored <= T"
  at the highest such T. The two never cover the same score: if they would, each moves out of the other's range.

numpy, scipy and scikit-learn are imported inside the functions (core must import fast).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

SCORES = (1, 2, 3, 4, 5)
RULE_THRESHOLDS = (2, 3, 4, 5)  # "judge >= 1" accepts everything: no rule to compare
CELLS = ("accept_accept", "accept_reject", "reject_accept", "reject_reject")  # (judge, human)


class DecisionError(ValueError):
    """A decision (or pending score) that is not a valid input, naming its index."""

    def __init__(self, what: str, index: int, problem: str):
        super().__init__(f"{what} {index}: {problem}")
        self.index = index


def _score_problem(score) -> str | None:
    if isinstance(score, bool) or not isinstance(score, numbers.Integral):
        return f"score must be an integer 1..5, got {score!r}"
    if not 1 <= score <= 5:
        return f"score {score} is outside 1..5"
    return None


def _accepted_problem(accepted) -> str | None:
    if not isinstance(accepted, bool):
        return f"accepted must be True or False, got {accepted!r}"
    return None


@dataclass(frozen=True)
class Decision:
    """One reviewed sample: the judge's score and whether you accepted it (edited counts as accepted)."""

    score: int
    accepted: bool

    def __post_init__(self):
        problem = _score_problem(self.score) or _accepted_problem(self.accepted)
        if problem:
            raise ValueError(problem)


def _table(decisions: Iterable) -> dict[int, list[int]]:
    """score -> [accepted, rejected] counts; raises DecisionError naming the first bad decision."""
    table = {s: [0, 0] for s in SCORES}
    for i, d in enumerate(decisions):
        if isinstance(d, Decision):
            score, accepted = d.score, d.accepted
        elif isinstance(d, (tuple, list)) and len(d) == 2:
            score, accepted = d
        else:
            raise DecisionError("decision", i, f"expected Decision or (score, accepted), got {d!r}")
        problem = _score_problem(score) or _accepted_problem(accepted)
        if problem:
            raise DecisionError("decision", i, problem)
        table[int(score)][0 if accepted else 1] += 1
    return table


@dataclass(frozen=True)
class Precision:
    """k of n decisions went the judge's way at this threshold, with a Wilson interval (None when n = 0)."""

    threshold: int
    k: int
    n: int
    precision: float | None
    low: float | None
    high: float | None

    def to_dict(self) -> dict:
        return {"k": self.k, "n": self.n, "precision": self.precision, "low": self.low, "high": self.high}


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float | None, float | None, float | None]:
    """(k/n, low, high) with scipy's Wilson score interval; (None, None, None) when n = 0."""
    if n == 0:
        return None, None, None
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    return k / n, float(ci.low), float(ci.high)


def kappa_from_cells(aa, ar, ra, rr):
    """Cohen's kappa from (judge, human) cell counts; numpy arrays in, array out, NaN where undefined (you or the
    judge's rule used one answer only)."""
    import numpy as np

    aa, ar, ra, rr = (np.asarray(x, dtype=float) for x in (aa, ar, ra, rr))
    n = aa + ar + ra + rr
    judge_acc, human_acc = aa + ar, aa + ra
    defined = (judge_acc > 0) & (judge_acc < n) & (human_acc > 0) & (human_acc < n)
    safe_n = np.where(n > 0, n, 1)
    po = (aa + rr) / safe_n
    pe = (judge_acc * human_acc + (n - judge_acc) * (n - human_acc)) / safe_n**2
    return np.where(defined, (po - pe) / np.where(defined, 1 - pe, 1), np.nan)


@dataclass(frozen=True)
class Agreement:
    n: int
    n_accepted: int
    n_rejected: int
    by_score: dict[int, tuple[int, int]]  # score -> (accepted, rejected)
    accuracy: dict[int, float | None]  # T in 2..5
    best_threshold: int | None
    agreement: float | None
    kappa: float | None
    kappa_low: float | None
    kappa_high: float | None
    kappa_note: str | None
    precision_accept: dict[int, Precision]  # T in 1..5: P(accepted | judge >= T)
    precision_reject: dict[int, Precision]  # T in 1..5: P(rejected | judge <= T)
    confusion: dict[str, int] | None  # at best_threshold, keys (judge)_(human)
    enough: bool
    needed: int
    min_decisions: int
    level: float
    n_boot: int
    seed: int

    def to_dict(self) -> dict:
        """JSON-ready: string keys, no NaN (undefined values are None)."""
        return {
            "n": self.n, "n_accepted": self.n_accepted, "n_rejected": self.n_rejected,
            "by_score": {str(s): {"accepted": a, "rejected": r} for s, (a, r) in self.by_score.items()},
            "accuracy": {str(t): v for t, v in self.accuracy.items()},
            "best_threshold": self.best_threshold, "agreement": self.agreement,
            "kappa": self.kappa, "kappa_low": self.kappa_low, "kappa_high": self.kappa_high,
            "kappa_note": self.kappa_note,
            "precision_accept": {str(t): p.to_dict() for t, p in self.precision_accept.items()},
            "precision_reject": {str(t): p.to_dict() for t, p in self.precision_reject.items()},
            "confusion": None if self.confusion is None else dict(self.confusion),
            "enough": self.enough, "needed": self.needed, "min_decisions": self.min_decisions,
            "level": self.level, "n_boot": self.n_boot, "seed": self.seed,
        }


def _kappa_note(n: int, n_accepted: int, judge_accepts: int, threshold: int | None) -> str | None:
    if n == 0:
        return "undefined: no decisions yet"
    if n_accepted == n:
        return "undefined: every decision was accept"
    if n_accepted == 0:
        return "undefined: every decision was reject"
    if judge_accepts == n:
        return f"undefined: the judge scored every decision ≥ {threshold}"
    if judge_accepts == 0:
        return f"undefined: the judge scored every decision below {threshold}"
    return None


def _bootstrap_kappa(cells: Sequence[int], n_boot: int, seed: int, level: float):
    """Percentile interval of kappa over n_boot resamples of the decisions (multinomial on the 2x2 cells)."""
    import numpy as np

    n = sum(cells)
    if n_boot <= 0 or n == 0:
        return None, None
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, np.asarray(cells, dtype=float) / n, size=n_boot)
    kappas = kappa_from_cells(*draws.T)
    kappas = kappas[~np.isnan(kappas)]
    if len(kappas) < n_boot / 2:
        return None, None
    alpha = 1 - level
    low, high = np.quantile(kappas, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def agreement(decisions: Iterable, *, min_decisions: int = 30, n_boot: int = 2000, seed: int = 0,
              level: float = 0.95) -> Agreement:
    """The judge-vs-you numbers for these decisions (Decision or (score, accepted) pairs)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level!r}")
    if min_decisions < 0 or n_boot < 0:
        raise ValueError(f"min_decisions and n_boot must be >= 0, got {min_decisions!r} and {n_boot!r}")
    table = _table(decisions)
    acc = {s: table[s][0] for s in SCORES}
    rej = {s: table[s][1] for s in SCORES}
    n_accepted, n_rejected = sum(acc.values()), sum(rej.values())
    n = n_accepted + n_rejected

    agree_counts = {t: sum(acc[s] for s in SCORES if s >= t) + sum(rej[s] for s in SCORES if s < t)
                    for t in RULE_THRESHOLDS}
    accuracy = {t: (c / n if n else None) for t, c in agree_counts.items()}
    best = None
    if n:
        best = RULE_THRESHOLDS[0]
        for t in RULE_THRESHOLDS[1:]:
            if agree_counts[t] > agree_counts[best]:  # strictly: a tie keeps the lower T
                best = t

    kappa = kappa_low = kappa_high = None
    confusion = None
    judge_accepts = 0
    if best is not None:
        cells = (sum(acc[s] for s in SCORES if s >= best), sum(rej[s] for s in SCORES if s >= best),
                 sum(acc[s] for s in SCORES if s < best), sum(rej[s] for s in SCORES if s < best))
        judge_accepts = cells[0] + cells[1]
        confusion = _confusion(table, best)
    note = _kappa_note(n, n_accepted, judge_accepts, best)
    if note is None:
        kappa = _sklearn_kappa(table, best)
        kappa_low, kappa_high = _bootstrap_kappa(cells, n_boot, seed, level)

    def prec(t: int, keep, good: int) -> Precision:
        k = sum(table[s][good] for s in SCORES if keep(s))
        m = sum(sum(table[s]) for s in SCORES if keep(s))
        return Precision(t, k, m, *wilson(k, m, level))

    return Agreement(
        n=n, n_accepted=n_accepted, n_rejected=n_rejected,
        by_score={s: (acc[s], rej[s]) for s in SCORES},
        accuracy=accuracy, best_threshold=best, agreement=accuracy[best] if best is not None else None,
        kappa=kappa, kappa_low=kappa_low, kappa_high=kappa_high, kappa_note=note,
        precision_accept={t: prec(t, lambda s, t=t: s >= t, 0) for t in SCORES},
        precision_reject={t: prec(t, lambda s, t=t: s <= t, 1) for t in SCORES},
        confusion=confusion, enough=n >= min_decisions, needed=max(0, min_decisions - n),
        min_decisions=min_decisions, level=level, n_boot=n_boot, seed=seed)


def _expand(table: dict[int, list[int]], threshold: int):
    """(human, judge) label arrays, 1 = accept, one entry per decision."""
    import numpy as np

    human, judge = [], []
    for s in SCORES:
        for label, count in ((1, table[s][0]), (0, table[s][1])):
            human += [label] * count
            judge += [int(s >= threshold)] * count
    return np.asarray(human), np.asarray(judge)


def _confusion(table: dict[int, list[int]], threshold: int) -> dict[str, int]:
    from sklearn.metrics import confusion_matrix

    human, judge = _expand(table, threshold)
    # rows: human (accept, reject); columns: judge (accept, reject); fixed labels keep all four cells
    m = confusion_matrix(human, judge, labels=[1, 0])
    return {"accept_accept": int(m[0][0]), "accept_reject": int(m[1][0]),
            "reject_accept": int(m[0][1]), "reject_reject": int(m[1][1])}


def _sklearn_kappa(table: dict[int, list[int]], threshold: int) -> float:
    from sklearn.metrics import cohen_kappa_score

    human, judge = _expand(table, threshold)
    return float(cohen_kappa_score(human, judge))


# ---- bulk actions ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Offer:
    action: str  # "accept" | "reject"
    threshold: int
    count: int  # pending samples it would apply to
    precision: float
    low: float
    high: float
    support: int  # decisions behind the precision
    sentence: str

    def to_dict(self) -> dict:
        return asdict(self)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _num(x: float) -> str:
    return f"{x:.2f}".replace("-", "−")


def _level(level: float) -> str:
    return f"{level * 100:g}%"


def _offer(agr: Agreement, action: str, p: Precision, count: int) -> Offer:
    sign = "≥" if action == "accept" else "≤"
    sentence = (f"{action} the {count} pending {'sample' if count == 1 else 'samples'} scored {sign} {p.threshold} "
                f"(precision at {p.threshold} on your {_plural(p.n, 'decision')}: {_num(p.precision)}, "
                f"{_level(agr.level)} interval {_num(p.low)}–{_num(p.high)})")
    return Offer(action, p.threshold, count, p.precision, p.low, p.high, p.n, sentence)


def bulk_offers(agr: Agreement, pending_scores: Sequence[int], *, min_precision: float = 0.9,
                min_support: int = 10) -> list[Offer]:
    """At most one accept and one reject offer for the pending samples; [] until agr.enough."""
    if not 0 <= min_precision <= 1:
        raise ValueError(f"min_precision must be between 0 and 1, got {min_precision!r}")
    if min_support < 1:
        raise ValueError(f"min_support must be at least 1, got {min_support!r}")
    pending = {s: 0 for s in SCORES}
    for i, s in enumerate(pending_scores):
        problem = _score_problem(s)
        if problem:
            raise DecisionError("pending score", i, problem)
        pending[int(s)] += 1
    if not agr.enough:
        return []

    def passes(p: Precision, count: int) -> bool:
        return p.n >= min_support and p.low is not None and p.low >= min_precision and count > 0

    def accept_at(above: int) -> int | None:  # lowest passing T > above
        for t in SCORES:
            if t > above and passes(agr.precision_accept[t], sum(pending[s] for s in SCORES if s >= t)):
                return t
        return None

    def reject_at(below: int) -> int | None:  # highest passing T < below
        for t in reversed(SCORES):
            if t < below and passes(agr.precision_reject[t], sum(pending[s] for s in SCORES if s <= t)):
                return t
        return None

    ta, tr = accept_at(0), reject_at(6)
    if ta is not None and tr is not None and tr >= ta:  # both would cover scores ta..tr: neither may
        ta, tr = accept_at(tr), reject_at(ta)
    offers = []
    if ta is not None:
        offers.append(_offer(agr, "accept", agr.precision_accept[ta], sum(pending[s] for s in SCORES if s >= ta)))
    if tr is not None:
        offers.append(_offer(agr, "reject", agr.precision_reject[tr], sum(pending[s] for s in SCORES if s <= tr)))
    return offers


def not_enough_sentence(agr: Agreement) -> str:
    """Why no bulk action is offered yet; "" once there are enough decisions."""
    if agr.enough:
        return ""
    return (f"the judge's numbers need {agr.needed} more reviewed {'sample' if agr.needed == 1 else 'samples'} "
            f"({agr.n} of {agr.min_decisions}) before a bulk action is offered")


def summary_line(agr: Agreement) -> str:
    """One line for a screen header: agreement at the best threshold, kappa with its interval, the count."""
    if not agr.enough:
        return not_enough_sentence(agr)
    if agr.best_threshold is None:
        return "judge vs you: no decisions yet"
    if agr.kappa is None:
        k = f"κ {agr.kappa_note}"
    elif agr.kappa_low is None:
        k = f"κ {_num(agr.kappa)} (no interval)"
    else:
        k = f"κ {_num(agr.kappa)} ({_num(agr.kappa_low)}–{_num(agr.kappa_high)})"
    return f"judge vs you: {agr.agreement:.0%} agree at ≥ {agr.best_threshold} · {k} · {_plural(agr.n, 'decision')}"
