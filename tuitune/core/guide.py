"""The guide's next step, worked out from the project's state (no UI here: the TUI renders it)."""

from __future__ import annotations

from dataclasses import dataclass

from tuitune.core.data.store import Store

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
    kept = st["by_status"].get("accepted", 0) + st["by_status"].get("edited", 0)
    if not task.description:
        return Step("task", "Describe the task",
                    "What should the tuned model do? Type it in a sentence or two (for example *Translate "
                    "Kubernetes docs from English to Chinese, keeping code and resource names as they are*), or "
                    "`/task NAME: DESCRIPTION`. Add a system prompt with `/system TEXT`.", "/task")
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
        return Step("review", "Review", f"{pending} samples wait for review: `/review` (a accept, r reject "
                                        f"with a reason, e edit, 1-5 rate). Your reasons become lessons for the "
                                        f"next round.", "/review")
    if kept + seeds < ENOUGH_TO_TRAIN and runs_done == 0:
        return Step("more", "Next round",
                    f"{kept + seeds} examples kept. Run another round with the lessons from review "
                    f"(`/lessons` shows them): `/gen 50`. Around {ENOUGH_TO_TRAIN}+ examples make a first "
                    f"training run worthwhile.", "/gen 50")
    if runs_done == 0:
        return Step("train", "Train", f"{kept + seeds} examples kept. Start a training run: `/train` "
                                      f"(LoRA on the embedded model by default; it runs in the background).",
                    "/train")
    return Step("chat", "Try the model", "Chat with the tuned model (`/chat`), compare it with the base model "
                                         "(`/compare`), measure it (`/eval`) and export the data (`/export`).",
                "/chat")
