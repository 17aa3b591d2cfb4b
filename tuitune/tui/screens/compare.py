"""`/compare`: the base model and a run's tuned model side by side, the same prompt to both.

Greedy by default (temperature 0: an answer depends on the model, not on the dice; Ctrl+O samples instead). Each
column is its own conversation with its own history (the tuned model's follow-ups see the tuned model's earlier
answers), kept while the app runs: leaving and coming back shows both again; Ctrl+L starts afresh. Everything
else (queueing while the server starts, F6, saving the tuned answer as a seed) is the chat screen's.

Each column sends through its own `ChatSession`; both go to one server at once. That a base request batched with
an adapter request is answered by the base model alone is the serving layer's business (`vllm.lora_slots`), not
this screen's."""

from __future__ import annotations

from tuitune.tui.events import ServerReady
from tuitune.tui.screens.chat import ChatScreen


class CompareScreen(ChatScreen):
    KIND = "compare"

    def __init__(self, run_id: str | None = None, *, backends: list | None = None, params=None):
        """`backends`: [tuned, base] to answer with instead of the app pool's (tests, embedding)."""
        super().__init__(run_id, compare=True, backends=backends, params=params)
        self.compare = True

    def column_titles(self) -> list[str]:
        return [f"tuned · {self.run_id or '?'}", "base"]

    def title_for(self, i: int, backend) -> str:
        return f"{'tuned' if i == 0 else 'base'} · {backend.name}"

    def default_params(self):
        from tuitune.core.serving.chat import GenParams

        return GenParams(temperature=0.0)

    def describe(self, event: ServerReady) -> str:
        return (f"compare: tuned {self.run_id} (left) and its base model (right), same prompt, each with its own "
                f"history · engine: {event.engine} · system prompt: the task's")

    def unavailable(self) -> str:
        if self.run_id is None and self._given is None:
            return ("Nothing to compare yet: no finished training run. /train first, or /compare RUN_ID for "
                    "another run (/runs lists them). Esc goes back.")
        return ""
