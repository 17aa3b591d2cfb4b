"""User and model text inside Markdown: shown as typed, never read as Markdown (or HTML) syntax."""

from __future__ import annotations

import re

# ASCII punctuation that Markdown (markdown-it, GFM tables) may read as syntax; a backslash before any ASCII
# punctuation is an escape there, so escaping a harmless one costs nothing
_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~&])")


def md_escape(text: str) -> str:
    """`text` as literal Markdown: "A <service> is *not* [x](y)" renders exactly so (Textual's Markdown drops
    HTML tags and reads brackets, stars and pipes as syntax)."""
    return _SPECIAL.sub(r"\\\1", text)


def md_line(text: str, limit: int = 200) -> str:
    """One line of literal Markdown: whitespace folded, cut at `limit` characters."""
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[:limit] + "…"
    return md_escape(text)


def md_code(text: str) -> str:
    """`text` as a Markdown code span (escapes do not work inside one: a fence longer than any run of backticks
    in the text keeps it whole)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if longest else ""
    return f"{fence}{pad}{text}{pad}{fence}"
