"""The backends that answer chat messages: one base class, two engines.

- `OpenAIBackend`: any OpenAI-compatible endpoint, normally a `VLLMServer` of ours (engine "vllm", or "remote"
  for a server we did not start);
- `TransformersBackend`: the model loaded in this process with transformers (engine "transformers"), used only
  where vLLM cannot run (see `EnginePool.backends`); slow, one answer at a time.
The UI shows `backend.engine` so the user always knows which engine is answering.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path

from tuitune.core.serving.errors import ChatError, EngineDied
from tuitune.core.serving.preflight import check_chat_template
from tuitune.core.serving.vllm import Endpoint, VLLMServer


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


class Backend(abc.ABC):
    """What answers chat messages: `name` (the model's name as shown and sent), `engine` ("vllm", "remote",
    "transformers": shown to the user), `location` (where it runs), `stream()` the answer as text deltas,
    `restart()` after a crash, `aclose()` when done."""

    name: str
    engine: str

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the model runs: a base URL, or "in-process"."""

    @abc.abstractmethod
    def stream(self, messages: list[dict], params: GenParams) -> AsyncIterator[str]:
        """The answer to `messages` as text deltas (an async generator)."""

    @abc.abstractmethod
    async def restart(self, timeout: float | None = None) -> None:
        """Make the backend answer again after its engine died (raises ChatError if it cannot)."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release connections or the loaded model."""


class OpenAIBackend(Backend):
    """Streams from an OpenAI-compatible endpoint; if `server` is given, it can be restarted after a crash."""

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

    @property
    def location(self) -> str:
        return self.endpoint.base_url

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
            held = ""  # a character whose bytes are not all here yet (see _split_partial)
            try:
                async for chunk in resp:
                    if chunk.choices and chunk.choices[0].delta.content:
                        text, held = _split_partial(held + chunk.choices[0].delta.content)
                        if text:
                            yield text
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
            return (f"the vLLM server for {self.name} stopped while answering; restart it, then ask again. "
                    f"Log: {self.server.log_path}")
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


REPLACEMENT = "\ufffd"


def _split_partial(text: str) -> tuple[str, str]:
    """(what can be shown now, what to hold back): `text` minus a trailing run of U+FFFD, which is what a
    detokenizer shows for a multi-byte character whose last bytes (tokens) have not come yet. The held part is
    put in front of the next delta; if no delta comes (the answer was cut at max_tokens mid-character), it is
    dropped instead of ending the answer with "�". A U+FFFD followed by more text is the model's own output
    (bytes that never make a character) and is shown as it is."""
    cut = len(text.rstrip(REPLACEMENT))
    return text[:cut], text[cut:]


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


class TransformersBackend(Backend):
    """The model loaded in this process with transformers: chat where vLLM cannot run. One answer at a time."""

    engine = "transformers"
    location = "in-process"

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
            held = ""
            try:
                while True:
                    piece = await asyncio.to_thread(next, it, sentinel)
                    if piece is sentinel:
                        break
                    text, held = _split_partial(held + piece)
                    if text:
                        yield text
            finally:
                cancelled.set()
                await asyncio.to_thread(thread.join)
            if error:
                raise ChatError(f"transformers generation failed for {self.name}: {error[0]}") from error[0]

    async def restart(self, timeout: float | None = None) -> None:
        await asyncio.to_thread(self.load)

    async def aclose(self) -> None:
        self._model = self._tok = None
