"""The forgetting check beside the verdict: did tuning cost the model its general answers?

Base and tuned answer the same short general questions (tuitune/prompts/general_check.jsonl, shipped with the app:
arithmetic, facts, a formatting instruction, a short rewrite), greedy, at most MAX_NEW_TOKENS new tokens each, with
no system prompt of the task's. An answer is right when one of the question's accepted answers appears in it as
whole words (case, punctuation and spacing ignored unless the question says `"case": true`), so "The capital of
France is Paris." is right and "142" is not "42".

"Lost clearly" (the warning): the paired bootstrap interval of tuned minus base (per question 100 = right, 0 = wrong;
verdict.bootstrap_mean_diff: 2000 resamples, 95%) lies below zero. On 18 questions that takes at least 4 more
questions lost than won (4 lost and none won: all 2000 resamples miss the 4 with probability (14/18)^18 = 1.1%,
under the 2.5% tail), so one or two unlucky answers of a 135M model never raise it.
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tuitune.core.evaluation.metrics import EvalError
from tuitune.core.evaluation.verdict import bootstrap_mean_diff

GENERAL_FILE = Path(__file__).parents[2] / "prompts" / "general_check.jsonl"  # package data, beside the prompts
MAX_NEW_TOKENS = 48
MEASURE = "general questions answered right (an accepted answer in the reply, as whole words)"
_WORD = re.compile(r"\w+")


@dataclass
class GeneralQuestion:
    prompt: str
    accept: list[str] = field(default_factory=list)
    case: bool = False  # the accepted answer's case counts (a formatting instruction such as "in capital letters")


def load_questions(path: Path = GENERAL_FILE) -> list[GeneralQuestion]:
    """The questions of a JSONL file ({"prompt", "accept": [...], "case"?}); EvalError names file:line:field."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise EvalError(f"{path}:{n}: not JSON ({e})") from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise EvalError(f"{path}:{n}: field 'prompt': a non-empty string is needed")
        accept = row.get("accept")
        if not isinstance(accept, list) or not accept or not all(isinstance(a, str) and _words(a) for a in accept):
            raise EvalError(f"{path}:{n}: field 'accept': a list of answers with at least one word each is needed")
        out.append(GeneralQuestion(row["prompt"], accept, bool(row.get("case", False))))
    if not out:
        raise EvalError(f"{path}: no questions")
    return out


def _words(text: str, case: bool = False) -> list[str]:
    text = unicodedata.normalize("NFKC", text)
    return _WORD.findall(text if case else text.lower())


def is_right(answer: str, q: GeneralQuestion) -> bool:
    """One of the accepted answers appears in `answer` as a run of whole words."""
    said = _words(answer, q.case)
    for accepted in q.accept:
        want = _words(accepted, q.case)
        if any(said[i:i + len(want)] == want for i in range(len(said) - len(want) + 1)):
            return True
    return False


def compare(questions: Sequence[GeneralQuestion], base: Sequence[str], tuned: Sequence[str]) -> dict:
    """Scores, the interval of tuned minus base, the words ("general answers: tuned X/N vs base Y/N right") and a
    warning ("" unless the tuned model lost clearly), with every answer."""
    if not (len(questions) == len(base) == len(tuned)) or not questions:
        raise EvalError(f"{len(base)} base and {len(tuned)} tuned answers for {len(questions)} general questions")
    b = [100.0 if is_right(a, q) else 0.0 for a, q in zip(base, questions)]
    t = [100.0 if is_right(a, q) else 0.0 for a, q in zip(tuned, questions)]
    n, nb, nt = len(questions), round(sum(b) / 100), round(sum(t) / 100)
    diff = bootstrap_mean_diff(t, b)
    text = f"general answers: tuned {nt}/{n} vs base {nb}/{n} right"
    warning = ""
    if diff.high < 0:
        warning = (f"the tuned model lost general answers ({nb - nt} fewer of {n} right; tuned minus base "
                   f"{diff.words()} points): it may have forgotten what the base model knew. If it should still "
                   f"answer general questions, mix general records into the training data, train fewer steps or "
                   f"lower the learning rate")
    return {"text": text, "warning": warning, "n": n, "base": nb, "tuned": nt, "vs_base": asdict(diff),
            "measure": MEASURE,
            "items": [{"prompt": q.prompt, "accept": q.accept, "base": ba, "tuned": ta, "base_right": bs > 0,
                       "tuned_right": ts > 0} for q, ba, ta, bs, ts in zip(questions, base, tuned, b, t)]}


def check(base_model, tuned_model, questions: Sequence[GeneralQuestion] | None = None, *,
          max_new_tokens: int = MAX_NEW_TOKENS, progress: Callable[[str], None] | None = None) -> dict:
    """Base and tuned (models with `answer(conversations, max_new_tokens)`, e.g. the verdict's LocalModels, already
    loaded) answer the general questions; `compare`'s fields plus seconds and max_new_tokens."""
    questions = list(questions) if questions is not None else load_questions()
    convs = [[{"role": "user", "content": q.prompt}] for q in questions]
    say = progress or (lambda _msg: None)
    t0 = time.monotonic()
    say(f"general answers: {getattr(base_model, 'name', 'base')}")
    base = base_model.answer(convs, max_new_tokens)
    say(f"general answers: {getattr(tuned_model, 'name', 'tuned')}")
    tuned = tuned_model.answer(convs, max_new_tokens)
    out = compare(questions, base, tuned)
    out.update(seconds=round(time.monotonic() - t0, 1), max_new_tokens=max_new_tokens)
    return out


def event_fields(general: dict) -> dict:
    """What the `verdict` event carries of it (the answers stay in the report)."""
    return {k: v for k, v in general.items() if k != "items"}
