"""Scores: corpus BLEU / chrF (sacrebleu), mean ROUGE-L (rouge-score), and per-item scores for the verdict.

- BLEU and chrF use tokenizer `zh` when the references are Chinese and `13a` otherwise. ROUGE-L's default
  tokenizer drops every non-ASCII character, so Chinese text is split with sacrebleu's `zh` tokenizer (one token
  per CJK character) before ROUGE.
- Short answers (a reference of at most SHORT_REFERENCE tokens) also get exact-match and contains-reference:
  after lower-casing and dropping punctuation and spaces, the answer equals / contains the reference.
- Per-item scores (sentence chrF, ROUGE-L, exact, contains) feed the bootstrap in verdict.py.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df]")
ZH_SHARE = 0.3  # share of CJK characters (among non-space characters) above which a text counts as Chinese
SHORT_REFERENCE = 12  # tokens (words, or CJK characters) at most for exact-match / contains-reference


class EvalError(Exception):
    """An evaluation that cannot run, with what to do about it."""


def is_chinese(texts: Sequence[str]) -> bool:
    chars = "".join("".join(t.split()) for t in texts)
    return bool(chars) and len(CJK.findall(chars)) / len(chars) >= ZH_SHARE


def bleu_tokenizer(references: Sequence[str]) -> str:
    """sacrebleu tokenizer for these references: `zh` for Chinese targets, `13a` otherwise."""
    return "zh" if is_chinese(references) else "13a"


class _ZhRougeTokenizer:
    """rouge-score tokenizer that keeps CJK characters (one token each) and lower-cased words."""

    def __init__(self):
        from sacrebleu.tokenizers.tokenizer_zh import TokenizerZh

        self._zh = TokenizerZh()

    def tokenize(self, text: str) -> list[str]:
        return self._zh(text.lower()).split()


def _rouge_scorer(tokenize: str):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=tokenize != "zh",
                                    tokenizer=_ZhRougeTokenizer() if tokenize == "zh" else None)


def _norm(text: str) -> str:
    """Lower-cased, without punctuation, symbols or spaces (for exact-match / contains)."""
    return "".join(c for c in unicodedata.normalize("NFKC", text).lower()
                   if not unicodedata.category(c).startswith(("P", "Z", "S", "C")))


def is_short(reference: str) -> bool:
    return 0 < len(CJK.findall(reference)) + len(CJK.sub(" ", reference).split()) <= SHORT_REFERENCE


def item_scores(hypotheses: Sequence[str], references: Sequence[str], tokenize: str | None = None) -> dict:
    """Per-item scores on a 0-100 scale: chrf (sentence chrF), rougeL (F1), and for short references exact and
    contains (100 or 0; None for a long reference)."""
    import sacrebleu

    tokenize = tokenize or bleu_tokenizer(references)
    chrf, scorer = sacrebleu.CHRF(), _rouge_scorer(tokenize)
    out: dict[str, list] = {"chrf": [], "rougeL": [], "exact": [], "contains": []}
    for h, r in zip(hypotheses, references):
        out["chrf"].append(round(chrf.sentence_score(h, [r]).score, 2))
        out["rougeL"].append(round(100 * scorer.score(r, h)["rougeL"].fmeasure, 2))
        short = is_short(r)
        out["exact"].append((100.0 if _norm(h) == _norm(r) else 0.0) if short else None)
        out["contains"].append((100.0 if _norm(r) and _norm(r) in _norm(h) else 0.0) if short else None)
    return out


def score(hypotheses: Sequence[str], references: Sequence[str], tokenize: str | None = None) -> dict:
    """Corpus BLEU and chrF (sacrebleu), mean ROUGE-L F1 (rouge-score), and exact-match / contains-reference
    over the short references (None when there is none), all on a 0-100 scale."""
    import sacrebleu

    if len(hypotheses) != len(references):
        raise EvalError(f"{len(hypotheses)} outputs for {len(references)} references")
    if not references:
        raise EvalError("no held-out examples to score")
    tokenize = tokenize or bleu_tokenizer(references)
    hyps, refs = list(hypotheses), list(references)
    bleu_metric, chrf_metric = sacrebleu.BLEU(tokenize=tokenize), sacrebleu.CHRF()
    bleu, chrf = bleu_metric.corpus_score(hyps, [refs]), chrf_metric.corpus_score(hyps, [refs])
    per = item_scores(hyps, refs, tokenize)
    short = [i for i, x in enumerate(per["exact"]) if x is not None]

    def mean_short(key: str) -> float | None:
        return round(sum(per[key][i] for i in short) / len(short), 2) if short else None

    return {"bleu": round(bleu.score, 2), "chrf": round(chrf.score, 2),
            "rougeL": round(sum(per["rougeL"]) / len(refs), 2), "exact": mean_short("exact"),
            "contains": mean_short("contains"), "short_n": len(short), "tokenizer": tokenize, "n": len(refs),
            "bleu_signature": str(bleu_metric.get_signature()), "chrf_signature": str(chrf_metric.get_signature()),
            "per_item": per}
