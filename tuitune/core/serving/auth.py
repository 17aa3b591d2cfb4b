"""Every route of a vLLM server we start answers only to the key holder.

vLLM's own API-key check guards only the paths under /v1, /v2, /inference and /cohere: `POST /invocations` answers
a chat completion without a key, and /tokenize, /detokenize, /metrics, /load, /docs are open. `VLLMServer` passes
this class to vLLM's `--middleware` option (an import path vLLM adds to its FastAPI app, outermost, so it runs
before routing): a request to ANY path (including /health, unknown paths and OPTIONS) without
`Authorization: Bearer <key>` gets 401. The key is read from `VLLM_API_KEY` in the server's environment (where
`VLLMServer` puts it, so it is not in `ps`); without one every request is refused (fail closed).
"""

from __future__ import annotations

import hashlib
import hmac
import os

KEY_ENV = "VLLM_API_KEY"
MIDDLEWARE = "tuitune.core.serving.auth.RequireKey"  # the value of vLLM's --middleware
UNAUTHORIZED = "Unauthorized: send the server's API key as 'Authorization: Bearer KEY'"


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def key_matches(authorization: str | None, key_digest: bytes | None) -> bool:
    """`Authorization: Bearer KEY` carries the key (constant-time compare of equal-length digests)."""
    if not authorization or key_digest is None:
        return False
    scheme, _, token = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(_digest(token.strip()), key_digest)


class RequireKey:
    """Pure ASGI middleware: HTTP and WebSocket requests need the key; lifespan events pass through.

    Starlette (vLLM's web framework) is imported here, in the server process, not when core is imported."""

    def __init__(self, app) -> None:
        from starlette.datastructures import Headers
        from starlette.responses import JSONResponse
        from starlette.websockets import WebSocketClose

        self.app = app
        self._headers, self._refuse_http, self._refuse_ws = Headers, JSONResponse, WebSocketClose
        key = os.environ.get(KEY_ENV, "")
        self.key_digest = _digest(key) if key else None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket") or \
                key_matches(self._headers(scope=scope).get("authorization"), self.key_digest):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":  # closed before accept: the handshake is refused
            response = self._refuse_ws(code=1008, reason="Unauthorized")
        else:
            response = self._refuse_http({"error": UNAUTHORIZED}, status_code=401,
                                         headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)
