"""One sample as styled text for the review screen's detail pane."""

from __future__ import annotations

from textual.content import Content

from tuitune.core.curation.judgments import Judgment
from tuitune.core.data.samples import Sample
from tuitune.core.synth.copies import is_copy_flag
from tuitune.tui.widgets.sample_list import GLYPHS, stars


def detail_text(s: Sample, judgment: Judgment | None = None) -> Content:
    """The full sample as styled text (no markup parsing: sample text is shown verbatim), with the judge's
    verdict when it has one. Textual Content, not Rich Text: it renders several times faster, which is most of
    the cost of a cursor move."""
    parts: list[str | tuple[str, str]] = []
    status_style = {"accepted": "bold $success", "rejected": "bold $error", "edited": "bold $warning"}
    parts += [(f"#{s.id} ", "bold"), (f"{GLYPHS.get(s.status, '?')} {s.status}", status_style.get(s.status, "bold"))]
    parts.append((f"  {stars(s.rating)}", "$warning" if s.rating else "dim"))
    where = f"round {s.round_id}" if s.round_id is not None else "no round"
    parts.append((f"  {where} · {s.origin}\n", "dim"))
    if s.reason and s.status == "pending" and is_copy_flag(s.reason):  # set by synthesis, not by a person
        parts += [("⚑ Flag: ", "bold $warning"), s.reason + " (check it: the teacher may have copied it)\n"]
    elif s.reason:
        parts += [("Reason: ", "bold $error"), s.reason + "\n"]
    if judgment is not None:
        tone = "bold $error" if judgment.score <= 2 else "bold $success" if judgment.score >= 4 else "bold"
        parts += [("Judge: ", "bold"), (f"{judgment.score}/5", tone)]
        if judgment.judge:
            parts.append((f"  {judgment.judge}", "dim"))
        parts.append("\n")
        if judgment.critique:
            parts += [judgment.critique, "\n"]
        if judgment.lesson:
            parts += [("Breaks the lesson: ", "bold $warning"), judgment.lesson, "\n"]

    def section(title: str, body: str) -> None:
        parts.append((f"\n{title}\n", "bold underline"))
        parts.append(body if body else ("(empty)", "dim italic"))
        parts.append("\n")

    if s.system:
        section("System", s.system)
    for i, (q, a) in enumerate(s.history, 1):
        section(f"History {i} · user", q)
        section(f"History {i} · assistant", a)
    section("Instruction", s.instruction)
    if s.input:
        section("Input", s.input)
    section("Output", s.output)
    if s.original and s.original.get("output", s.output) != s.output:
        section("Output before your edit", s.original.get("output") or "")
    return Content.assemble(*parts)
