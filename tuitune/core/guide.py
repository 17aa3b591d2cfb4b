"""The guide's next step, worked out from the project's state (no UI here: the TUI renders it)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from tuitune.core.data.samples import KEPT_STATUSES
from tuitune.core.data.store import Store
from tuitune.core.words import plural

MIN_SEEDS = 3
FIRST_ROUND = 20
ENOUGH_TO_TRAIN = 30

# A Markdown list, not a code block: list items wrap at any terminal width (a code block is cut at the edge).
GOOD_SEED_EXAMPLE = (
    "- **instruction**: Translate this Kubernetes doc sentence into Chinese.\n"
    "- **input**: A Pod is the smallest deployable unit of computing that you can create and manage in "
    "Kubernetes.\n"
    "- **output**: Pod 是可以在 Kubernetes 中创建和管理的、最小的可部署的计算单元。"
)


TASK_NAME_WIDTH = 48  # terminal columns: a task name fits a header and a card title

# a name does not end on these: "Translate Kubernetes documentation from" -> "Translate Kubernetes documentation"
DANGLING = frozenset({
    "a", "an", "the", "and", "or", "but", "nor", "so", "yet", "to", "of", "in", "into", "onto", "on", "at", "by",
    "for", "from", "with", "without", "within", "via", "as", "than", "like", "per", "about", "above", "across",
    "after", "against", "along", "among", "around", "before", "behind", "below", "beneath", "beside", "between",
    "beyond", "during", "except", "inside", "near", "since", "through", "throughout", "toward", "towards", "under",
    "until", "upon", "while", "whether", "when", "where", "which", "who", "whose", "that", "this", "these", "those",
    "their", "its", "his", "her", "our", "your", "my", "is", "are", "be", "being", "keeping", "keep", "making",
    "using", "if", "then", "also",
})

# where a phrase ends: a sentence's end (before a capital: "e.g. this" goes on), clause punctuation (ASCII and
# CJK), a dash between spaces; asides in brackets are left out of a name
_PHRASE_END = re.compile(r"[.!?]\s(?![a-z])|[;:,]\s|[。！？；：，、]| [-–—] ")
_ASIDE = re.compile(r"\s*(\([^)]*\)|\[[^\]]*\]|（[^）]*）)")


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def task_name(sentence: str, limit: int = TASK_NAME_WIDTH) -> str:
    """A short name for a task described in a sentence: its first phrase, whole words up to `limit` columns,
    never ending on a preposition, article or conjunction. The full sentence stays the description.
    "Translate Kubernetes documentation from English to Chinese, keeping code as it is" ->
    "Translate Kubernetes documentation from English"."""
    text = " ".join(sentence.split())
    bare = _ASIDE.sub("", text)
    m = _PHRASE_END.search(bare + " ")  # "k8s.io" goes on: a stop ends a phrase only before a space
    phrase = bare[: m.start()] if m and m.start() > 0 else bare
    phrase = phrase.strip(" .,;:!?-–—\"'()[]")
    words: list[str] = []
    for word in phrase.split():
        candidate = " ".join([*words, word])
        if _width(candidate) > limit:
            if not words:  # one very long word (or CJK text without spaces): cut it at the limit
                cut = ""
                for ch in word:
                    if _width(cut + ch) > limit - 1:
                        break
                    cut += ch
                return cut + "…"
            break
        words.append(word)
    while len(words) > 1 and words[-1].lower().strip(",.;:") in DANGLING:
        words.pop()
    return " ".join(words).rstrip(",.;:") or text[:limit]


def _kept(store: Store) -> int:
    """Seeds + accepted/edited samples, each once (a seed is stored as accepted)."""
    marks = ",".join("?" * len(KEPT_STATUSES))
    sql = f"SELECT COUNT(*) FROM samples WHERE status IN ({marks}) OR origin = 'seed'"
    return store.conn.execute(sql, list(KEPT_STATUSES)).fetchone()[0]


def _wait(n: int) -> str:
    return "waits" if n == 1 else "wait"


@dataclass
class Step:
    key: str      # task / seeds / generate / review / more / train / chat
    title: str
    message: str  # Markdown
    command: str  # the slash command that does it


def next_step(store: Store, *, runs_done: int = 0) -> Step:
    task = store.get_task()
    st = store.stats()
    seeds = st["by_origin"].get("seed", 0)
    pending = st["by_status"].get("pending", 0)
    kept = _kept(store)  # what a run trains on: seeds and accepted or edited samples
    if not task.description:
        return Step("task", "Describe the task",
                    "What should the tuned model do? Type it in a sentence or two (for example *Translate "
                    "Kubernetes docs from English to Chinese, keeping code and resource names as they are*), or "
                    "`/task NAME: DESCRIPTION`. Add a system prompt with `/system TEXT`.", "/task")
    if runs_done:  # a model is trained: try it; what still waits for review is for the next run
        waiting = (f" {plural(pending, 'sample')} {_wait(pending)} for review (`/review`) before "
                   f"the next run." if pending else "")
        return Step("chat", "Try the model", "Chat with the tuned model (`/chat`), compare it with the base model "
                                             "(`/compare`), measure it on the held-out split (`/eval`) and export "
                                             f"the data (`/export`).{waiting}", "/chat")
    if seeds < MIN_SEEDS:
        return Step("seeds", "Add seed examples",
                    f"Give me at least {MIN_SEEDS} seed examples ({seeds} so far): `/seed` opens a form, "
                    f"`/import FILE seeds` reads Alpaca/ShareGPT/OpenAI JSONL/CSV. A good seed is specific and "
                    f"complete:\n\n{GOOD_SEED_EXAMPLE}", "/seed")
    if st["rounds"] == 0:
        return Step("generate", "First round",
                    f"Let the teacher write a first small round of {FIRST_ROUND} so you can spot its typical "
                    f"mistakes early: `/gen {FIRST_ROUND}`.", f"/gen {FIRST_ROUND}")
    if pending:
        return Step("review", "Review", f"{plural(pending, 'sample')} {_wait(pending)} for "
                                        f"review: `/review` (a accept, r reject with a reason, e edit, 1-5 rate). "
                                        f"Your reasons become lessons for the next round.", "/review")
    if kept < ENOUGH_TO_TRAIN:
        return Step("more", "Next round",
                    f"{plural(kept, 'example')} kept. Run another round with the lessons from review "
                    f"(`/lessons` shows them): `/gen 50`. Around {ENOUGH_TO_TRAIN}+ examples make a first "
                    f"training run worthwhile.", "/gen 50")
    return Step("train", "Train", f"{plural(kept, 'example')} kept. Start a training run: `/train` "
                                  f"(LoRA on the embedded model by default; it runs in the background).", "/train")
