"""The guide's next step, worked out from the project's state (no UI here: the TUI renders it)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from tuitune.core import gemma, models
from tuitune.core.data.samples import KEPT_STATUSES
from tuitune.core.data.store import Store
from tuitune.core.languages import LanguageMix, language_mix
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


# the steps whose message carries the base-model advice: those where the base is about to be used (or was)
ADVISED_STEPS = ("generate", "more", "train", "chat")
LANGUAGE_SAMPLES = 500  # the seeds first, then the oldest samples: enough to tell a project's languages (~0.07 s)


def project_languages(store: Store, limit: int = LANGUAGE_SAMPLES) -> LanguageMix:
    """The languages of the task description, the system prompt and up to `limit` samples (seeds first; rejected
    samples left out): what the base model has to read, and, apart, what it has to write (the outputs)."""
    task = store.get_task()
    rows = store.conn.execute("SELECT instruction, input, system, output FROM samples WHERE status != 'rejected' "
                              "ORDER BY origin != 'seed', id LIMIT ?", (limit,)).fetchall()
    texts = [task.description, task.system_prompt, *(t for r in rows for t in r[:3])]
    return language_mix(texts, [r[3] for r in rows])


def suggests_multilingual(mix: LanguageMix, base: str | None) -> bool:
    """Whether to suggest the multilingual base: the project is mostly not English and the base is the
    English-only embedded model."""
    return base == models.EMBEDDED_NAME and mix.mostly_non_english


def base_advice(mix: LanguageMix, base: str | None, models_dir: Path | None) -> str:
    """Markdown: why and how to train on gemma3-270m instead of the embedded English model ('' when not needed).
    Nothing is switched: the user chooses."""
    if not suggests_multilingual(mix, base):
        return ""
    ready = models_dir is not None and models.is_ready(models_dir / gemma.NAME)
    tokens = " and needs ~35% fewer tokens on Chinese text" if mix.main == "Chinese" else ""
    how = (f"It is prepared: pick it as the base in `/train`, or `tuitune train --base {gemma.NAME}`." if ready else
           f"Pick it as the base in `/train` (the form shows the terms and prepares it on Accept: "
           f"~{gemma.DOWNLOAD_MB} MB, a few minutes) or run `tuitune models prepare {gemma.NAME}`.")
    return (f"**Base model:** this project is {mix.describe()}, but the default base {models.EMBEDDED_NAME} is "
            f"English-only. **{gemma.NAME}** (Gemma 3 270M, multilingual, pretrained) handles many languages"
            f"{tokens} (training costs ~3x per token). It is opt-in, under the {gemma.LICENSE} (not an "
            f"open-source license; models trained from it keep those terms). {how} Nothing changes until you "
            f"choose.")


def base_hint(mix: LanguageMix, ready: bool) -> str:
    """One sentence for the training form, beside the base model (the caller checks suggests_multilingual)."""
    return (f"This project is mostly {mix.main}: {gemma.NAME} is multilingual ({gemma.LICENSE}, opt-in"
            f"{', prepared' if ready else ''}); {models.EMBEDDED_NAME} is English-only.")


def next_step(store: Store, *, runs_done: int = 0, base: str | None = None, models_dir: Path | None = None) -> Step:
    """The next thing to do. Given the base model the project trains on (and the models folder), the steps that use
    the base also say when the multilingual opt-in base suits the project's languages better."""
    step = _next_step(store, runs_done)
    if base is not None and step.key in ADVISED_STEPS:
        advice = base_advice(project_languages(store), base, models_dir)
        if advice:
            step.message = f"{step.message}\n\n{advice}"
    return step


def _next_step(store: Store, runs_done: int) -> Step:
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
