"""The review screen's command palette: every review action by name, with the key that does it."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

# (palette name, help, action) — every review action is in the command palette.
ACTIONS: tuple[tuple[str, str, str], ...] = (
    ("Review: accept", "Accept the sample and go to the next one (a)", "accept"),
    ("Review: reject", "Reject with a reason; the reason becomes a lesson (r)", "reject"),
    ("Review: edit", "Edit instruction, input and output in place (e)", "edit"),
    *((f"Review: rate {n}", f"Rate the sample {n} of 5 ({n})", f"rate({n})") for n in range(1, 6)),
    ("Review: clear rating", "Remove the rating (0)", "rate(0)"),
    ("Review: undo", "Undo the last review action (u)", "undo"),
    ("Review: filter by status", "Cycle all / pending / accepted / rejected / edited (f)", "cycle_status"),
    ("Review: filter by round", "Cycle through the synthesis rounds (o)", "cycle_round"),
    ("Review: filter by rating", "Cycle any / 5 … 1 stars / unrated (s)", "cycle_rating"),
    ("Review: filter by judge score", "Cycle any / score 1 … 5 / score ≤ 2 / unscored (v)", "cycle_score"),
    ("Review: sort by judge score", "Lowest judge scores first (unscored last), or back to id order (w)",
     "sort_score"),
    ("Review: bulk action", ("Accept or reject the pending samples the judge's scores allow, as one undoable "
     "step (b)"), "bulk"),
    ("Review: search", "Find samples whose text contains a phrase (/)", "search"),
    ("Review: clear search and filters", "Show every sample (x)", "clear_filters"),
    ("Review: lessons", "What review taught so far: it goes into the next round's prompt (l)", "lessons"),
    ("Review: expand detail", "Show the sample full screen, or back (enter)", "toggle_detail"),
    ("Review: keys", "Show or hide every key of this screen (?)", "keys"),
    ("Review: back", "Leave the review screen (q)", "back"),
)


class ReviewCommands(Provider):
    """Command palette entries for the review screen."""

    def _commands(self):
        screen = self.screen
        for name, help_text, action in ACTIONS:
            yield name, help_text, partial(screen.run_action, action)

    async def discover(self) -> Hits:
        for name, help_text, callback in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._commands():
            if (score := matcher.match(name)) > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
