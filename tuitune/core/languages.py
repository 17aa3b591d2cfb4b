"""How much of a text is not English, and in which languages or scripts: from the Unicode data of its letters
(`unicodedata`), no model and no dictionary. Used by the guide to pick a base model for the task.

Each letter is assigned the script its Unicode name starts with (CJK, HIRAGANA, CYRILLIC, ARABIC, LATIN, ...).
ASCII letters are English. The rest are weighed and labelled:
- Chinese, Japanese and Korean characters weigh WIDE_WEIGHT letters each: a Chinese word is about 1.5 characters,
  an English word about 5 letters, so counting characters one for one would make "在对象持久化之前拦截 Kubernetes
  API 服务器请求的一段代码" look half English. Han characters count as Japanese in a text that also has kana.
- Latin letters with accents (é, ß, ñ, ą ...) mark a Latin-script language other than English when at least
  ACCENTED_WORDS of a text's Latin words (and ACCENTED_MIN) have them (French, German, Spanish, Polish ...): then all of that text's Latin letters count as
  "other Latin-script"; an English text with a "café" in it stays English.
Letters only: digits, punctuation, code symbols and spaces weigh nothing.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

WIDE_WEIGHT = 3
ACCENTED_WORDS = 0.15  # share of a text's Latin words with a non-English letter from which it is not English
ACCENTED_MIN = 2  # ... and at least this many such words ("Réunion" alone says little)
MOSTLY = 0.5  # "mostly non-English": at least this share of the letters (or of the outputs' letters)
MIN_LETTERS = 20  # fewer (weighted) letters than this say nothing
TEXT_CHARS = 2000  # a text's first characters tell its language; the rest is not read (a long answer stays fast)
_NOT_ASCII_LETTER = re.compile(r"[^A-Za-z]+")

LATIN_OTHER = "other Latin-script"
# Unicode script (the first word of a letter's name) -> the language it stands for, where one does
LABELS = {"CJK": "Chinese", "HIRAGANA": "Japanese", "KATAKANA": "Japanese", "HALFWIDTH": "Japanese",
          "HANGUL": "Korean", "CYRILLIC": "Cyrillic", "ARABIC": "Arabic", "GREEK": "Greek", "HEBREW": "Hebrew",
          "DEVANAGARI": "Devanagari (Hindi…)", "THAI": "Thai"}
WIDE = {"CJK", "HIRAGANA", "KATAKANA", "HALFWIDTH", "HANGUL", "IDEOGRAPHIC", "BOPOMOFO"}
KANA = {"HIRAGANA", "KATAKANA", "HALFWIDTH"}
IGNORED = {"MODIFIER", "FULLWIDTH"}  # modifier letters; fullwidth ASCII look-alikes inside CJK text


@lru_cache(maxsize=8192)
def script(ch: str) -> str:
    """The script of a letter as the first word of its Unicode name ('LATIN', 'CJK', 'CYRILLIC', ...), or ''."""
    if not unicodedata.category(ch).startswith("L"):
        return ""
    if ch.isascii():
        return "ASCII"
    word = unicodedata.name(ch, "").split(" ", 1)[0]
    return "" if word in IGNORED else word


@dataclass(frozen=True)
class LanguageMix:
    """The letters of some texts by language: shares of their (weighted) letters that are not English."""

    share: float = 0.0  # of all the texts' letters
    input_share: float = 0.0  # of the letters of everything but the outputs (what a tuned model has to read)
    output_share: float = 0.0  # of the outputs' letters (what a tuned model has to write)
    languages: tuple[tuple[str, float], ...] = ()  # the non-English ones, largest first, as shares of all letters
    letters: float = 0.0  # weighted letters counted

    @property
    def non_english(self) -> float:
        """The share that decides, of what the model reads or of what it writes, whichever is larger: a translation
        into Chinese counts as Chinese even with English instructions, and one from Chinese too."""
        return max(self.input_share, self.output_share)

    @property
    def mostly_non_english(self) -> bool:
        return self.letters >= MIN_LETTERS and self.non_english >= MOSTLY

    @property
    def main(self) -> str:
        """The largest non-English language or script ('' when none)."""
        return self.languages[0][0] if self.languages else ""

    def describe(self) -> str:
        """'mostly Chinese (64% of the letters, 98% of the outputs)'."""
        if self.non_english < 0.05:
            return "English"
        names = [name for name, part in self.languages if part >= 0.1 * self.share] or [self.main]
        which = " and ".join(names[:2])
        where = f"{self.share:.0%} of the letters"
        if self.output_share > self.share + 0.05:
            where += f", {self.output_share:.0%} of the outputs"
        elif self.input_share > self.share + 0.05:
            where += f", {self.input_share:.0%} of the prompts"
        return f"{'mostly ' if self.mostly_non_english else ''}{which} ({where})"


def _count(text: str, weights: Counter) -> None:
    """Add one text's weighted letters by language to `weights` ('English' for ASCII letters)."""
    text = text[:TEXT_CHARS]
    if text.isascii():  # most English text: its letters, counted without a loop in Python
        weights["English"] += len(_NOT_ASCII_LETTER.sub("", text))
        return
    local: Counter = Counter()
    words = accented = 0
    in_word = has_accent = False
    for ch in text:
        s = script(ch)
        latin = s in ("ASCII", "LATIN")
        if latin:
            if not in_word:
                words += 1
                in_word, has_accent = True, False
            if s == "LATIN" and not has_accent:
                accented += 1
                has_accent = True
        else:
            in_word = False
        if s:
            local[s] += WIDE_WEIGHT if s in WIDE else 1
    if not local:
        return
    other_latin = accented >= ACCENTED_MIN and accented / words >= ACCENTED_WORDS
    japanese = any(local[k] for k in KANA)
    for s, w in local.items():
        if s in ("ASCII", "LATIN"):
            name = LATIN_OTHER if other_latin else "English"
        elif s == "CJK" and japanese:
            name = "Japanese"
        else:
            name = LABELS.get(s, s.title())
        weights[name] += w


def _share(weights: Counter) -> float:
    total = sum(weights.values())
    return (total - weights["English"]) / total if total else 0.0


def language_mix(texts: Iterable[str], outputs: Iterable[str] = ()) -> LanguageMix:
    """The languages of `texts` (instructions, inputs, system prompts, descriptions) and `outputs` together; the
    outputs' share is also kept on its own."""
    read: Counter = Counter()
    out: Counter = Counter()
    for text in texts:
        _count(text or "", read)
    for text in outputs:
        _count(text or "", out)
    weights = read + out
    total = sum(weights.values())
    others = sorted(((name, w / total) for name, w in weights.items() if name != "English" and w), key=lambda x: -x[1])
    return LanguageMix(_share(weights), _share(read), _share(out), tuple(others), total)
