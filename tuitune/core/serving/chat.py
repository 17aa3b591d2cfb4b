"""Chat with served models: streaming sessions with history, side-by-side comparison, saving exchanges.

A *backend* streams the answer to a list of chat messages as text deltas. Two exist:
- `OpenAIBackend`: any OpenAI-compatible endpoint, normally a `VLLMServer` of ours (engine "vllm");
- `TransformersBackend`: the model loaded in this process with transformers (engine "transformers"), the
  fallback for chat where vLLM cannot run (see `tuitune.core.serving.vllm.VLLMUnavailable`); slow, one at a time.
The UI shows `backend.engine` so the user always knows which engine is answering.

`ChatSession` keeps the system prompt (the task's by default), the multi-turn history and the generation
parameters; `send()` / `regenerate()` are async generators of deltas; `stop()` ends the current answer early.
`compare()` streams the same prompt from N backends in parallel. `save_exchange()` stores a chat turn (with
the user's corrected answer) as a new seed or sample: the loop from chat back to training closes there.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from tuitune.core.data.samples import Sample
from tuitune.core.serving.vllm import Endpoint, ServingError, VLLMServer, check_chat_template

if TYPE_CHECKING:
    from tuitune.core.data.store import Store


class ChatError(Exception):
    """A chat answer that failed; the message says what to do next."""


class EngineDied(ChatError):
    """The serving engine stopped answering (process died, connection lost). `restart()` the backend."""


@dataclass
class GenParams:
    """Generation parameters (OpenAI names)."""

    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 512
    seed: int | None = None
    stop: list[str] | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    response_format: dict | None = None  # OpenAI response_format (e.g. a JSON schema); OpenAI backends only

    def to_openai(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


class Backend(Protocol):
    name: str
    engine: str

    def stream(self, messages: list[dict], params: GenParams) -> AsyncIterator[str]: ...


class OpenAIBackend:
    """Streams from an OpenAI-compatible endpoint; if `server` is given, it can be restarted after a crash."""

    engine = "vllm"

    def __init__(self, endpoint: Endpoint, server: VLLMServer | None = None, *, timeout: float = 120.0):
        self.endpoint = endpoint
        self.server = server
        self.name = endpoint.model
        self.engine = endpoint.engine
        self.timeout = timeout
        self._client = None

    @classmethod
    def from_server(cls, server: VLLMServer, model: str | None = None) -> OpenAIBackend:
        return cls(server.endpoint(model), server)

    def client(self):
        if self._client is None:
            from openai import AsyncOpenAI

            self._client = AsyncOpenAI(base_url=self.endpoint.base_url, api_key=self.endpoint.api_key,
                                       timeout=self.timeout, max_retries=0)
        return self._client

    async def stream(self, messages: list[dict], params: GenParams) -> AsyncIterator[str]:
        import openai

        try:
            resp = await self.client().chat.completions.create(model=self.name, messages=messages, stream=True,
                                                               **params.to_openai())
            try:
                async for chunk in resp:
                    if chunk.choices and chunk.choices[0].delta.content:
                        yield chunk.choices[0].delta.content
            finally:  # stopped early (or failed): close the HTTP response so vLLM aborts the request
                with contextlib.suppress(Exception):
                    await resp.close()
        except (openai.APIConnectionError, openai.APITimeoutError) as e:
            raise EngineDied(await asyncio.to_thread(self._died_message, e)) from e
        except openai.APIStatusError as e:
            if self.server is not None and not await asyncio.to_thread(self.server.healthy):
                raise EngineDied(await asyncio.to_thread(self._died_message, e)) from e
            raise ChatError(f"{self.name} refused the request ({e.status_code}): {_short(e)}") from e
        except Exception as e:  # a connection cut mid-stream surfaces as the HTTP library's own error types
            if _is_transport_error(e) or (self.server is not None and not await asyncio.to_thread(self.server.healthy)):
                raise EngineDied(await asyncio.to_thread(self._died_message, e)) from e
            raise

    def _died_message(self, e: Exception) -> str:
        if self.server is not None and not self.server.healthy():
            return (f"the vLLM server for {self.name} stopped while answering; restart it (/restart in the chat, "
                    f"or backend.restart()). Log: {self.server.log_path}")
        return f"lost the connection to {self.endpoint.base_url} ({type(e).__name__}: {e}); is the server running?"

    async def restart(self, timeout: float | None = None) -> None:
        if self.server is None:
            raise ChatError(f"{self.name} is served elsewhere ({self.endpoint.base_url}); restart it there")
        await asyncio.to_thread(self.server.restart, timeout)
        self.endpoint = self.server.endpoint(self.name)
        if self._client is not None:
            await self._client.close()
        self._client = None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _is_transport_error(e: BaseException) -> bool:
    """A lost connection / truncated response from the HTTP stack (httpx, httpcore, h11), by module name so
    it works with whichever httpx distribution the openai client uses."""
    while e is not None:
        if type(e).__module__.split(".")[0].rstrip("0123456789") in ("httpx", "httpcore", "h11"):
            return True
        e = e.__cause__ or e.__context__
    return False


def _short(e: Exception) -> str:
    text = str(e)
    return text if len(text) < 300 else text[:300] + "..."


# transformers builds a model on the meta device under process-wide patches, so two threads loading at once can
# hand back a model whose weights were never filled in ("Cannot copy out of meta tensor", or silently random
# weights). Loads in this process take turns.
_LOAD_LOCK = threading.Lock()


class TransformersBackend:
    """The model loaded in this process with transformers: chat where vLLM cannot run. One answer at a time."""

    engine = "transformers"

    def __init__(self, model: Path, name: str | None = None, *, device: str | None = None):
        self.path = Path(model)
        self.name = name or self.path.name
        self.device = device
        self._model = None
        self._tok = None
        self._lock = asyncio.Lock()

    def load(self) -> None:
        with _LOAD_LOCK:
            self._load()

    def _load(self) -> None:
        if self._model is not None:
            return
        check_chat_template(self.path)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._tok = AutoTokenizer.from_pretrained(self.path)
        # float32 on CPU: bf16 matmuls are emulated (slow) on CPUs without native support.
        dtype = torch.float32 if device == "cpu" else torch.bfloat16
        self._model = AutoModelForCausalLM.from_pretrained(self.path, dtype=dtype).to(device).eval()
        self.device = device

    async def stream(self, messages: list[dict], params: GenParams) -> AsyncIterator[str]:
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        async with self._lock:
            await asyncio.to_thread(self.load)
            tok, model = self._tok, self._model
            ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                          return_dict=True).to(model.device)
            streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
            cancelled = threading.Event()

            class _Cancel(StoppingCriteria):
                def __call__(self, input_ids, scores, **kwargs):
                    return cancelled.is_set()

            kwargs = dict(**ids, max_new_tokens=params.max_tokens, streamer=streamer,
                          stopping_criteria=StoppingCriteriaList([_Cancel()]), pad_token_id=tok.eos_token_id)
            if params.temperature > 0:
                kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
            else:
                kwargs.update(do_sample=False)
            if params.seed is not None:
                import torch

                torch.manual_seed(params.seed)
            error: list[BaseException] = []

            def run():
                try:
                    model.generate(**kwargs)
                except BaseException as e:  # noqa: BLE001 - handed to the async side
                    error.append(e)
                    streamer.end()

            thread = threading.Thread(target=run, name=f"generate-{self.name}", daemon=True)
            thread.start()
            it = iter(streamer)
            sentinel = object()
            try:
                while True:
                    piece = await asyncio.to_thread(next, it, sentinel)
                    if piece is sentinel:
                        break
                    if piece:
                        yield piece
            finally:
                cancelled.set()
                await asyncio.to_thread(thread.join)
            if error:
                raise ChatError(f"transformers generation failed for {self.name}: {error[0]}") from error[0]

    async def restart(self, timeout: float | None = None) -> None:
        await asyncio.to_thread(self.load)

    async def aclose(self) -> None:
        self._model = self._tok = None


@dataclass
class ChatEngines:
    """Backends for a set of models, the vLLM servers behind them (None for the transformers fallback), and
    `note`: why the fallback is used, for the UI to show beside `engine`."""

    backends: list
    group: object | None = None  # tuitune.core.serving.vllm.ServerGroup
    engine: str = "vllm"
    note: str = ""

    def stop(self) -> None:
        if self.group is not None:
            self.group.stop()


def open_backends(specs: list, log_dir: Path, settings=None, *, engine: str = "auto",
                  timeout: float | None = None) -> ChatEngines:
    """Start vLLM for `specs` (tuitune.core.serving.plan.ModelSpec) and return a backend per spec.

    engine="auto" uses vLLM and falls back to the in-process transformers engine ONLY when vLLM cannot run here
    (VLLMUnavailable: not installed, unsupported platform, too little memory); any other start failure is raised
    (ServingError, with the log tail). engine="vllm" never falls back; engine="transformers" never starts vLLM.
    Blocks for the start (about a minute on CPU): call it from a worker thread in a UI."""
    from tuitune.core.serving.plan import plan
    from tuitune.core.serving.vllm import VLLMUnavailable

    note = ""
    if engine != "transformers":
        try:
            group = plan(specs, log_dir, settings)
            group.start(timeout)
            return ChatEngines([OpenAIBackend(group.endpoint(sp.name), _server_for(group, sp.name)) for sp in specs],
                               group, "vllm")
        except VLLMUnavailable as e:
            if engine == "vllm":
                raise
            note = f"{e} Using the transformers engine."
    backends = []
    for sp in specs:
        path = sp.path
        if sp.base is not None:  # an adapter: the transformers engine uses the run's merged model
            path = sp.path.parent / "merged"
            if not (path / "config.json").exists():
                raise ChatError(f"run {sp.name} has no merged model for the transformers engine; run "
                                f"`tuitune merge {sp.name}`")
        backends.append(TransformersBackend(path, sp.name))
    return ChatEngines(backends, None, "transformers", note)


def _server_for(group, name: str):
    return next(s for s in group.servers if name in s.model_names)


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


__all__ = ["Backend", "ChatEngines", "ChatError", "ChatSession", "CompareEvent", "EngineDied", "GenParams", "OpenAIBackend",
           "ServingError", "TransformersBackend", "compare", "compare_collect", "open_backends", "save_exchange"]
