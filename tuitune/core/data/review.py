"""Review actions the TUI and the CLI call: accept, reject (with a reason), edit, rate, undo; and the lessons
that review teaches the next synthesis round. Each action is one committed transaction logged in `reviews`
with the fields it changed, so it can be undone and so edits become preference pairs."""

from __future__ import annotations

import json
from collections import Counter

from tuitune.core.data.samples import TEXT_FIELDS, Sample, normalise
from tuitune.core.data.store import Store, StoreError

# Quick picks offered when rejecting; free text is always allowed too.
COMMON_REASONS = (
    "wrong or made-up facts",
    "does not follow the task",
    "wrong language",
    "too short / incomplete",
    "too long / rambling",
    "repeats an existing example",
    "bad formatting",
)


class ReviewError(StoreError):
    """An invalid review action (bad rating, empty reason, nothing to undo)."""


def _state(s: Sample) -> dict:
    return {"instruction": s.instruction, "input": s.input, "output": s.output, "system": s.system,
            "status": s.status, "rating": s.rating, "reason": s.reason, "original": s.original,
            "decided_by": s.decided_by}


def _apply(store: Store, sample_id: int, action: str, note: str = "", bulk: int | None = None, **changes) -> Sample:
    with store.transaction():
        before = store.get_sample(sample_id)
        after = before.with_(**changes)
        store.update_sample(after)
        store.log_review(sample_id, action, reason=note, before=_state(before), after=_state(after), bulk=bulk)
    return after


def accept(store: Store, sample_id: int, *, rating: int | None = None) -> Sample:
    s = store.get_sample(sample_id)
    status = "edited" if s.original else "accepted"
    return _apply(store, sample_id, "accept", status=status, reason="", decided_by="human",
                  **({"rating": _check_rating(rating)} if rating is not None else {}))


def reject(store: Store, sample_id: int, reason: str) -> Sample:
    if not reason.strip():
        raise ReviewError("Say why you reject it: the reason becomes a lesson for the next round.")
    return _apply(store, sample_id, "reject", note=reason.strip(), reason=reason.strip(), status="rejected",
                  decided_by="human")


def bulk(store: Store, sample_ids: list[int], action: str, *, reason: str = "") -> int:
    """Accept or reject many pending samples as ONE action (one transaction, undone in one step by `undo`),
    recorded as decided by the judge, not a human. Samples no longer pending are left alone. Returns how many
    changed."""
    if action not in ("accept", "reject"):
        raise ReviewError(f"a bulk action accepts or rejects, not {action!r}")
    if action == "reject" and not reason.strip():
        raise ReviewError("a bulk reject needs a reason (it becomes a lesson for the next round)")
    n = 0
    with store.transaction():
        group = store.conn.execute("SELECT COALESCE(MAX(bulk), 0) + 1 FROM reviews").fetchone()[0]
        for sid in sample_ids:
            s = store.get_sample(sid)
            if s.status != "pending":
                continue
            if action == "accept":
                _apply(store, sid, "accept", bulk=group, status="edited" if s.original else "accepted", reason="",
                       decided_by="judge")
            else:
                _apply(store, sid, "reject", note=reason.strip(), bulk=group, status="rejected",
                       reason=reason.strip(), decided_by="judge")
            n += 1
    return n


def edit(store: Store, sample_id: int, **fields: str) -> Sample:
    """Change text fields; the first edit keeps the original text (for preference pairs). Status -> edited."""
    bad = set(fields) - set(TEXT_FIELDS)
    if bad:
        raise ReviewError(f"cannot edit {', '.join(sorted(bad))}; editable fields: {', '.join(TEXT_FIELDS)}")
    s = store.get_sample(sample_id)
    if not (fields.get("instruction", s.instruction).strip() and fields.get("output", s.output).strip()):
        raise ReviewError("instruction and output must not be empty")
    if all(getattr(s, k) == v for k, v in fields.items()):
        return s
    original = s.original or {k: getattr(s, k) for k in TEXT_FIELDS}
    return _apply(store, sample_id, "edit", status="edited", reason="", original=original, decided_by="human",
                  **fields)


def rate(store: Store, sample_id: int, rating: int | None) -> Sample:
    return _apply(store, sample_id, "rate", rating=_check_rating(rating) if rating is not None else None)


def _check_rating(rating: int) -> int:
    if not isinstance(rating, int) or not 1 <= rating <= 5:
        raise ReviewError(f"rating must be 1-5, got {rating!r}")
    return rating


def undo(store: Store) -> Sample | None:
    """Revert the most recent review action of this session (store.session: this terminal or app), not another
    reviewer's; a bulk action is reverted whole, in one step. Returns the restored sample (the first of a bulk
    action), or None when this session has nothing to undo. Refused when someone else changed the sample since
    (undoing would overwrite their change)."""
    with store.transaction():
        row = store.conn.execute("SELECT id, bulk FROM reviews WHERE session = ? ORDER BY id DESC LIMIT 1",
                                 (store.session,)).fetchone()
        if row is None:
            return None
        if row[1] is None:
            actions = store.conn.execute("SELECT id, sample_id, before FROM reviews WHERE id = ?", (row[0],)).fetchall()
        else:
            actions = store.conn.execute("SELECT id, sample_id, before FROM reviews WHERE bulk = ? AND session = ? "
                                         "ORDER BY id DESC", (row[1], store.session)).fetchall()
        restored = None
        for review_id, sample_id, before in actions:
            later = store.conn.execute("SELECT COUNT(*) FROM reviews WHERE sample_id = ? AND id > ? AND session != ?",
                                       (sample_id, review_id, store.session)).fetchone()[0]
            if later:
                raise ReviewError(f"sample #{sample_id} was changed by another reviewer after your last action; "
                                  f"undoing it would overwrite their change. Review the sample again instead.")
            state = json.loads(before)
            state.setdefault("decided_by", "")  # actions logged before schema 4
            restored = store.get_sample(sample_id).with_(**state)
            store.update_sample(restored)
            store.conn.execute("DELETE FROM reviews WHERE id = ?", (review_id,))
    return restored


def lessons(store: Store, *, limit: int = 12) -> list[str]:
    """What review taught, for the next round's prompt: rejection reasons (most frequent first, with counts)
    and a few corrections (before -> after of edited answers)."""
    reasons = Counter()
    display: dict[str, str] = {}
    for (reason,) in store.conn.execute("SELECT reason FROM samples WHERE status = 'rejected' AND reason != ''"):
        key = normalise(reason)
        reasons[key] += 1
        display.setdefault(key, reason.strip())
    out = [f"{display[k]} ({n} sample{'s' if n > 1 else ''} rejected for this)" if n > 1 else display[k]
           for k, n in reasons.most_common(limit)]
    for s in store.samples(status="edited", limit=max(0, limit - len(out))):
        if not s.original:
            continue
        changed = [k for k in TEXT_FIELDS if (s.original.get(k) or "") != getattr(s, k)]
        if changed:
            k = changed[-1]
            before, after = _changed_part(s.original.get(k) or "", getattr(s, k))
            out.append(f"The reviewer corrected the {k}: {before!r} -> {after!r}")
    return out[:limit]


def _changed_part(before: str, after: str, n: int = 120, context: int = 20) -> tuple[str, str]:
    """The two texts clipped to `n` characters around where they first differ (a long answer edited near its
    end must not show as two identical-looking prefixes)."""
    before, after = " ".join(before.split()), " ".join(after.split())
    same = next((i for i, (x, y) in enumerate(zip(before, after)) if x != y), min(len(before), len(after)))
    start = max(0, same - context)

    def clip(text: str) -> str:
        part = text[start:start + n]
        return ("…" if start else "") + part + ("…" if start + n < len(text) else "")

    return clip(before), clip(after)
