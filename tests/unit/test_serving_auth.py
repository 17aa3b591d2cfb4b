"""The key check every vLLM server of ours loads (`--middleware tuitune.core.serving.auth.RequireKey`), on a real
Starlette app (vLLM's web framework): every path needs `Authorization: Bearer KEY`, the health check included;
without a configured key nothing is served. The route walk against a real vLLM server is in tests/e2e."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tuitune.core.serving import auth


def _app(monkeypatch, key: str | None) -> TestClient:
    if key is None:
        monkeypatch.delenv(auth.KEY_ENV, raising=False)
    else:
        monkeypatch.setenv(auth.KEY_ENV, key)

    async def ok(request):
        return PlainTextResponse("served")

    async def ws(websocket):
        await websocket.accept()
        await websocket.send_text("served")
        await websocket.close()

    app = Starlette(routes=[Route("/health", ok), Route("/invocations", ok, methods=["POST"]),
                            Route("/v1/models", ok), WebSocketRoute("/v1/realtime", ws)])
    app.add_middleware(auth.RequireKey)  # what vLLM does with a --middleware class
    return TestClient(app)


def test_every_path_and_method_needs_the_key(monkeypatch):
    client = _app(monkeypatch, "s3cret")
    for method, path in [("GET", "/health"), ("POST", "/invocations"), ("GET", "/v1/models"), ("OPTIONS", "/v1/models"),
                         ("GET", "/no-such-path")]:
        r = client.request(method, path)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (method, path, r.status_code)
        assert "Authorization: Bearer" in r.json()["error"]
        for wrong in ("Bearer wrong", "Basic s3cret", "s3cret", "Bearer s3cret2", "Bearer "):
            assert client.request(method, path, headers={"Authorization": wrong}).status_code == 401, (path, wrong)
    good = {"Authorization": "Bearer s3cret"}
    assert client.get("/health", headers=good).text == "served"
    assert client.post("/invocations", headers=good).text == "served"
    assert client.get("/v1/models", headers={"authorization": "bearer s3cret"}).status_code == 200
    assert client.get("/no-such-path", headers=good).status_code == 404  # the key passes; routing answers


def test_websocket_needs_the_key(monkeypatch):
    client = _app(monkeypatch, "s3cret")
    with pytest.raises(WebSocketDisconnect) as e, client.websocket_connect("/v1/realtime") as ws:
        ws.receive_text()
    assert e.value.code == 1008
    with client.websocket_connect("/v1/realtime", headers={"Authorization": "Bearer s3cret"}) as ws:
        assert ws.receive_text() == "served"


def test_without_a_configured_key_nothing_is_served(monkeypatch):
    client = _app(monkeypatch, None)
    for header in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
        assert client.get("/health", headers=header).status_code == 401


def test_the_server_command_loads_the_check_and_keeps_the_key_out_of_argv(embedded_model, tmp_path):
    from tuitune.core.serving.vllm import VLLMServer
    from tuitune.settings import Settings

    server = VLLMServer(embedded_model, settings=Settings(), log_path=tmp_path / "log.txt")
    cmd = server.command()
    assert cmd[cmd.index("--middleware") + 1] == auth.MIDDLEWARE
    module, name = auth.MIDDLEWARE.rsplit(".", 1)
    assert getattr(__import__(module, fromlist=[name]), name) is auth.RequireKey  # the import path vLLM resolves
    assert server.api_key not in " ".join(cmd) and "--api-key" not in cmd
