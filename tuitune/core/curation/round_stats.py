"""Rounds that show the loop working: per synthesis round, what was generated and what review made of it (accepted,
rejected, edited, the acceptance rate, the top rejection reasons), the lessons the round was generated with, the
judge's mean score and the counts per teacher. `tuitune synth --rounds`, the TUI's rounds view and the guide read it."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from tuitune.core.data.store import Store


@dataclass
class RoundStats:
    id: int
    status: str
    started_at: str
    requested: int
    generated: int  # samples stored by the round
    reviewed: int = 0  # decided (by a human or a bulk action)
    accepted: int = 0
    rejected: int = 0
    edited: int = 0
    by_judge: int = 0  # of the reviewed, decided by a bulk action
    acceptance: float | None = None  # (accepted + edited) / reviewed
    top_reasons: list[tuple[str, int]] = field(default_factory=list)
    lessons: list[str] = field(default_factory=list)  # the lessons in the round's prompt
    judge_mean: float | None = None
    judged: int = 0
    teachers: dict[str, dict] = field(default_factory=dict)  # name -> {stored, accepted, rejected, requests, ...}
    batch: dict = field(default_factory=dict)  # the batch job ({} for an online round)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["top_reasons"] = [{"reason": r, "count": n} for r, n in self.top_reasons]
        return d

    def line(self) -> str:
        """One line for a terminal listing."""
        rate = f"{self.acceptance:.0%} accepted" if self.acceptance is not None else "not reviewed"
        judge = f"  judge {self.judge_mean:.1f}" if self.judge_mean is not None else ""
        teachers = ("  " + ", ".join(f"{n} {t.get('stored', 0)}" for n, t in self.teachers.items())
                    if len(self.teachers) > 1 else "")
        batch = f"  batch {self.batch.get('kind')} {self.batch.get('status', '')}".rstrip() if self.batch else ""
        return (f"round {self.id:3} {self.status:10} {self.generated:4}/{self.requested:<4} generated  "
                f"{self.reviewed:4} reviewed: {self.accepted} accepted, {self.edited} edited, {self.rejected} "
                f"rejected ({rate}){judge}{teachers}{batch}")


def round_stats(store: Store) -> list[RoundStats]:
    import json

    from tuitune.core.curation.judgments import round_means
    from tuitune.core.synth.rounds import list_rounds

    means = round_means(store)
    counts: dict[int, Counter] = {}
    per_teacher: dict[int, dict[str, Counter]] = {}
    for round_id, status, decided_by, teacher, n in store.conn.execute(
            "SELECT round_id, status, decided_by, teacher, COUNT(*) FROM samples WHERE round_id IS NOT NULL "
            "GROUP BY round_id, status, decided_by, teacher"):
        c = counts.setdefault(round_id, Counter())
        c[status] += n
        c["stored"] += n
        if decided_by == "judge":
            c["by_judge"] += n
        t = per_teacher.setdefault(round_id, {}).setdefault(teacher or "-", Counter())
        t["stored"] += n
        t[status] += n
    reasons: dict[int, Counter] = {}
    for round_id, reason, n in store.conn.execute(
            "SELECT round_id, reason, COUNT(*) FROM samples WHERE status = 'rejected' AND reason != '' AND round_id "
            "IS NOT NULL GROUP BY round_id, reason"):
        reasons.setdefault(round_id, Counter())[" ".join(reason.split())] += n
    batches = dict(store.conn.execute("SELECT id, batch FROM rounds").fetchall())
    out = []
    for r in list_rounds(store):
        c = counts.get(r.id, Counter())
        reviewed = c["accepted"] + c["rejected"] + c["edited"]
        teachers = {}
        for name, t in per_teacher.get(r.id, {}).items():
            teachers[name] = {"stored": t["stored"], "accepted": t["accepted"] + t["edited"],
                              "rejected": t["rejected"], "pending": t["pending"]}
        for name, t in (r.counters.get("teachers") or {}).items():  # the pool's request counts
            teachers.setdefault(name, {"stored": 0, "accepted": 0, "rejected": 0, "pending": 0}).update(
                {k: v for k, v in t.items() if k in ("requests", "responses", "failed", "rerouted", "out")})
        mean = means.get(r.id)
        try:
            batch = json.loads(batches.get(r.id) or "{}")
        except ValueError:
            batch = {}
        out.append(RoundStats(
            id=r.id, status=r.status, started_at=r.started_at, requested=r.requested, generated=c["stored"],
            reviewed=reviewed, accepted=c["accepted"], rejected=c["rejected"], edited=c["edited"],
            by_judge=c["by_judge"], acceptance=(c["accepted"] + c["edited"]) / reviewed if reviewed else None,
            top_reasons=reasons.get(r.id, Counter()).most_common(3), lessons=list(r.params.get("lessons") or []),
            judge_mean=mean[0] if mean else None, judged=mean[1] if mean else 0, teachers=teachers,
            batch={k: v for k, v in batch.items() if k in ("kind", "id", "status", "requests")}))
    return out


def trend(stats: list[RoundStats]) -> str:
    """The loop at a glance, for the guide: "round 3: 78% accepted (round 1: 41%)" ('' before two reviewed rounds
    would say anything)."""
    reviewed = [s for s in stats if s.acceptance is not None and s.reviewed >= 5]
    if not reviewed:
        return ""
    last = reviewed[-1]
    text = f"round {last.id}: {last.acceptance:.0%} accepted"
    if len(reviewed) > 1:
        first = reviewed[0]
        text += f" (round {first.id}: {first.acceptance:.0%})"
    if last.judge_mean is not None:
        text += f", judge mean {last.judge_mean:.1f}"
    return text
