"""The serving package's exceptions: each message says what happened and what to do next."""

from __future__ import annotations


class ServingError(Exception):
    """A served model that cannot start or answer: what happened, the log tail, and what to do next."""


class VLLMUnavailable(ServingError):
    """vLLM cannot run on this machine at all (no build, wrong platform, too little memory).

    The pool then answers with the in-process transformers engine (`EnginePool.backends`, engine "auto")."""


class ChatTemplateMissing(ServingError):
    """The model folder has no chat template, so it cannot answer chat requests."""


class ChatError(Exception):
    """A chat answer that failed; the message says what to do next."""


class EngineDied(ChatError):
    """The serving engine stopped answering (process died, connection lost). `restart()` the backend."""
