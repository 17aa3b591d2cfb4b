"""The slash commands of the main screen: name, usage and help (used for /help, completion and the palette)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Slash:
    name: str
    usage: str
    help: str

    @property
    def needs_arg(self) -> bool:
        """Usage with a required argument (upper-case word outside brackets)."""
        words = self.usage.split()[1:]
        return bool(words) and not words[0].startswith("[")


SLASH_COMMANDS: tuple[Slash, ...] = (
    Slash("task", "/task NAME: DESCRIPTION", "describe what the tuned model should do"),
    Slash("system", "/system TEXT", "set the system prompt used in training and chat"),
    Slash("seed", "/seed", "write a seed example in a form"),
    Slash("import", "/import FILE [seeds|accepted|pending]", "import Alpaca / ShareGPT / OpenAI / TRL JSONL, CSV, Parquet, .gz, a datasets folder or "
          "hf://datasets/ORG/NAME from the cache"),
    Slash("gen", "/gen [N] [TEACHER]", "generate a round of N samples (default 20) with a teacher from /settings"),
    Slash("review", "/review [pending|all]", "review samples with the keyboard"),
    Slash("judge", "/judge [ROUND]", "score the unscored samples 1-5 with the judge (the default teacher); a round's "
          "only with ROUND"),
    Slash("rounds", "/rounds", "per round: generated, reviewed, acceptance, judge mean, teachers, reasons, lessons"),
    Slash("lessons", "/lessons", "what review taught; used in the next round's prompt"),
    Slash("train", "/train", "open the training form and launch a background run"),
    Slash("runs", "/runs", "list training runs"),
    Slash("chat", "/chat [RUN_ID]", "chat with the tuned model (or the base model before any run)"),
    Slash("compare", "/compare [RUN_ID]", "base vs tuned side by side, greedy, each with its own history"),
    Slash("gguf", "/gguf [RUN_ID] [QUANT]", "export the tuned model as a GGUF + Ollama Modelfile (default: the latest "
          "run, q8_0; also g on a finished run's card)"),
    Slash("eval", "/eval [RUN_ID]", "BLEU / chrF / ROUGE-L on the held-out split (default: the latest run)"),
    Slash("verdict", "/verdict [RUN_ID]", "a run's held-out answers side by side (F6; default: the latest verdict)"),
    Slash("export", "/export [alpaca|sharegpt|openai|dpo] [TEST_SIZE]", "export the dataset to exports/"),
    Slash("stats", "/stats", "counts by status and origin"),
    Slash("settings", "/settings", "teacher endpoints, default base model"),
    Slash("help", "/help", "this list and the keys"),
)

BY_NAME = {s.name: s for s in SLASH_COMMANDS}


def help_markdown() -> str:
    """The commands as a Markdown list, one item each: it reads at 80 columns (a table there took three lines a
    command), and a `|` inside a usage (`[seeds|accepted|pending]`) cannot split a table row."""
    return "**Commands**\n\n" + "\n".join(f"- `{s.usage}` — {s.help}" for s in SLASH_COMMANDS)
