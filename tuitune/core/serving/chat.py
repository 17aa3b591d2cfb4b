"""Chat with served models: streaming sessions with history, side-by-side comparison, saving exchanges.

The backends (what answers: vLLM through the OpenAI API, or transformers in-process) are in `backends.py`;
which backend answers which model is the pool's choice (`pool.py`). `ChatSession` keeps the system prompt (the
task's by default), the multi-turn history and the generation parameters; `send()` / `regenerate()` are async
generators of deltas; `stop()` ends the current answer early. `compare()` streams the same prompt from N backends
in parallel. `save_exchange()` stores a chat turn (with the user's corrected answer) as a new seed or sample: the
loop from chat back to training closes there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tuitune.core.data.samples import Sample
from tuitune.core.serving.backends import Backend, GenParams, OpenAIBackend, TransformersBackend
from tuitune.core.serving.errors import ChatError, EngineDied

if TYPE_CHECKING:
    from tuitune.core.data.store import Store


# ---- a chat session ----------------------------------------------------------------------------

@dataclass
class ChatSession:
    """One conversation with one backend."""

    backend: Backend
    system: str = ""
    params: GenParams = field(default_factory=GenParams)
    history: list[tuple[str, str]] = field(default_factory=list)
    partial: str = ""  # the answer being streamed (or cut by stop())
    _stop: asyncio.Event | None = field(default=None, repr=False)

    @classmethod
    def for_store(cls, store: Store, backend: Backend, **kw) -> ChatSession:
        """A session with the task's system prompt (the default in the product)."""
        return cls(backend, system=store.get_task().system_prompt, **kw)

    def messages(self, prompt: str) -> list[dict]:
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        for q, a in self.history:
            msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        return msgs + [{"role": "user", "content": prompt}]

    def stop(self) -> None:
        """End the current answer early; what was streamed so far is kept as the answer."""
        if self._stop is not None:
            self._stop.set()

    async def send(self, prompt: str, params: GenParams | None = None) -> AsyncIterator[str]:
        """Stream the answer to `prompt`; when done (or stopped), the turn is appended to the history.
        On an error the turn is not recorded, so `send()` again (after a restart) repeats it cleanly."""
        self._stop = asyncio.Event()
        self.partial = ""
        agen = self.backend.stream(self.messages(prompt), params or self.params)
        try:
            async for delta in agen:
                if self._stop.is_set():
                    break
                self.partial += delta
                yield delta
        finally:
            await agen.aclose()
            self._stop = None
        self.history.append((prompt, self.partial))

    async def regenerate(self, params: GenParams | None = None) -> AsyncIterator[str]:
        """Drop the last answer and stream a new one to the same prompt."""
        if not self.history:
            raise ChatError("nothing to regenerate: send a message first")
        prompt, _ = self.history.pop()
        async for delta in self.send(prompt, params):
            yield delta

    @property
    def last_exchange(self) -> tuple[str, str] | None:
        return self.history[-1] if self.history else None

    def clear(self) -> None:
        self.history.clear()
        self.partial = ""


# ---- side by side --------------------------------------------------------------------------------

@dataclass
class CompareEvent:
    """One event of a side-by-side run: a delta from `model`, or its end (`done`, with `error` if it failed)."""

    model: str
    delta: str = ""
    done: bool = False
    error: Exception | None = None


async def compare(backends: Sequence[Backend], prompt: str, *, system: str = "", params: GenParams | None = None,
                  history: Sequence[tuple[str, str]] = ()) -> AsyncIterator[CompareEvent]:
    """Send the same prompt to every backend at once; yield their deltas as they arrive (interleaved).

    Each model ends with exactly one `done` event; a failing model does not stop the others."""
    params = params or GenParams()
    queue: asyncio.Queue[CompareEvent] = asyncio.Queue()
    session_msgs = ChatSession(backends[0], system=system, history=list(history)).messages(prompt) if backends else []

    async def pump(b: Backend) -> None:
        try:
            async for delta in b.stream(list(session_msgs), params):
                await queue.put(CompareEvent(b.name, delta))
            await queue.put(CompareEvent(b.name, done=True))
        except Exception as e:  # noqa: BLE001 - reported as this model's result
            await queue.put(CompareEvent(b.name, done=True, error=e))

    tasks = [asyncio.create_task(pump(b)) for b in backends]
    remaining = len(tasks)
    try:
        while remaining:
            ev = await queue.get()
            if ev.done:
                remaining -= 1
            yield ev
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def compare_collect(backends: Sequence[Backend], prompt: str, **kw) -> dict[str, str]:
    """`compare()` to completion: model name -> full answer (raises the first model error)."""
    out: dict[str, str] = {b.name: "" for b in backends}
    for_error: list[Exception] = []
    async for ev in compare(backends, prompt, **kw):
        out[ev.model] += ev.delta
        if ev.error:
            for_error.append(ev.error)
    if for_error:
        raise for_error[0]
    return out


# ---- closing the loop ----------------------------------------------------------------------------

def save_exchange(store: Store, prompt: str, answer: str, corrected: str | None = None, *, as_seed: bool = False,
                  system: str = "", history: Sequence[tuple[str, str]] = ()) -> Sample:
    """Store a chat turn as a new seed (`as_seed=True`) or a kept sample (origin "chat").

    With a `corrected` answer different from the model's, the sample keeps the correction as its output and
    the model's answer as `original`, so it also becomes a preference pair (chosen=corrected, rejected=answer)."""
    if not prompt.strip():
        raise ChatError("cannot save an exchange without a prompt")
    output = corrected if corrected is not None and corrected.strip() else answer
    if not output.strip():
        raise ChatError("cannot save an empty answer; type the answer the model should have given")
    changed = corrected is not None and corrected.strip() != "" and corrected != answer
    sample = Sample(instruction=prompt, output=output, system=system, history=[tuple(p) for p in history],
                    origin="seed" if as_seed else "chat",
                    status="accepted" if as_seed or not changed else "edited",
                    original={"output": answer} if changed else None)
    return store.add_sample(sample)


__all__ = ["Backend", "ChatError", "ChatSession", "CompareEvent", "EngineDied", "GenParams", "OpenAIBackend",
           "TransformersBackend", "compare", "compare_collect", "save_exchange"]
