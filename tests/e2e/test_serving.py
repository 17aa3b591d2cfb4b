"""Serving with real vLLM on CPU: stream through the openai client, every route behind the key, LoRA side by
side, crash + restart, clean stop (process group and port gone), `tuitune serve --json` on a merged model, no
orphans after kill -9."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import openai
import psutil
import pytest
from procs import group_members

from tuitune.core.serving.vllm import port_is_free

pytestmark = pytest.mark.e2e
MODEL = "smollm2-135m-instruct"



def wait_gone(pgid: int, port: int, timeout: float = 40) -> tuple[list[int], bool]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left, free = group_members(pgid), port_is_free(port)
        if not left and free:
            break
        time.sleep(0.5)
    return group_members(pgid), port_is_free(port)


def stream_text(base_url: str, api_key: str, model: str, prompt: str, max_tokens: int = 24) -> str:
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)
    chunks = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                            stream=True, max_tokens=max_tokens, temperature=0)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_shared_server_streams_and_needs_the_key(vllm_embedded):
    s = vllm_embedded
    assert s.alive() and s.base_url.startswith("http://127.0.0.1:")
    assert "smollm2-135m-instruct" in s.listed_models()
    text = stream_text(s.base_url, s.api_key, "smollm2-135m-instruct", "What is the capital of France?")
    assert text.strip(), "the stream produced no text"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=s.base_url, api_key="wrong-key", max_retries=0).models.list()
    # the key is not on the command line (other users can read `ps`)
    cmdlines = [" ".join(p.cmdline()) for p in psutil.Process(s.pid).children(recursive=True)]
    assert cmdlines and not any(s.api_key in c for c in cmdlines)


def _status(method: str, url: str, key: str | None = None, body: dict | None = None) -> int:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    data = json.dumps(body if body is not None else {}).encode() if method in ("POST", "PUT", "PATCH") else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_every_route_of_the_server_needs_the_key(vllm_embedded):
    """vLLM's own key check guards only /v1, /v2, /inference and /cohere (POST /invocations answered a chat
    completion without a key; /tokenize, /metrics, /load, /docs were open). Walk the server's own route table:
    every route, every method, answers 401 without the key (and with a wrong one), and works with it."""
    s = vllm_embedded
    root = s.base_url.removesuffix("/v1")
    spec = json.loads(urllib.request.urlopen(urllib.request.Request(
        f"{root}/openapi.json", headers={"Authorization": f"Bearer {s.api_key}"}), timeout=30).read())
    routes = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    # routes FastAPI keeps out of its schema (docs, the schema itself, the mounted Prometheus app), an unknown path
    # (the check runs before routing) and a CORS preflight
    routes |= {("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/redoc"), ("GET", "/docs/oauth2-redirect"),
               ("GET", "/metrics/"), ("GET", "/no-such-route"), ("OPTIONS", "/v1/chat/completions")}
    assert {("POST", "/invocations"), ("POST", "/tokenize"), ("GET", "/health"), ("GET", "/load"),
            ("GET", "/metrics"), ("POST", "/v1/chat/completions")} <= routes, sorted(routes)
    assert len(routes) > 25
    open_routes = {}
    for method, path in sorted(routes):
        url = root + path.replace("{", "").replace("}", "")  # /v1/responses/{response_id} -> a made-up id
        for key in (None, "wrong-key", s.api_key + "x"):
            code = _status(method, url, key)
            if code != 401:
                open_routes[(method, path, key)] = code
    assert not open_routes, f"answered without the right key: {open_routes}"
    # with the key: the routes work (the check lets the key holder through to vLLM's handlers)
    assert _status("GET", f"{s.base_url}/models", s.api_key) == 200
    assert _status("GET", f"{root}/health", s.api_key) == 200
    assert _status("POST", f"{root}/tokenize", s.api_key, {"model": MODEL, "prompt": "hello"}) == 200
    assert _status("POST", f"{root}/invocations", s.api_key,
                   {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}) == 200
    assert s.healthy()  # our own health check sends the key


async def test_base_and_tuned_side_by_side_both_streams_complete(vllm_base_and_tuned):
    from tuitune.core.serving.chat import GenParams, OpenAIBackend, compare

    s = vllm_base_and_tuned
    assert s.port != s.taken_port and any(str(s.taken_port) in n for n in s.notes), s.notes
    assert set(s.listed_models()) >= {"base", "tuned"}
    backends = [OpenAIBackend.from_server(s, "base"), OpenAIBackend.from_server(s, "tuned")]
    answers, done, first_delta_at = {"base": "", "tuned": ""}, [], {}
    t0 = time.monotonic()
    async for ev in compare(backends, "Who are you?", params=GenParams(temperature=0, max_tokens=40)):
        assert ev.error is None, ev.error
        if ev.delta:
            first_delta_at.setdefault(ev.model, time.monotonic() - t0)
        answers[ev.model] += ev.delta
        if ev.done:
            done.append(ev.model)
    assert sorted(done) == ["base", "tuned"]
    assert answers["base"].strip() and answers["tuned"].strip()
    # streamed in parallel: each model's first token came before the other model finished
    assert set(first_delta_at) == {"base", "tuned"}


async def test_server_dies_mid_stream_then_restarts(vllm_base_and_tuned):
    from tuitune.core.serving.chat import ChatSession, EngineDied, GenParams, OpenAIBackend

    s = vllm_base_and_tuned
    backend = OpenAIBackend.from_server(s, "base")
    chat = ChatSession(backend, params=GenParams(temperature=0.8, max_tokens=400, seed=1))
    api_server = next(p for p in psutil.Process(s.pid).children() if "api_server" in " ".join(p.cmdline()))
    got = ""
    with pytest.raises(EngineDied, match="restart"):
        async for delta in chat.send("Write a long story about a lighthouse keeper."):
            got += delta
            if len(got) > 5 and api_server.is_running():
                api_server.kill()
    assert got and not chat.history  # the failed turn is not recorded
    # the guard cleaned up after the crash: no process left in the group, the port is free
    left, free = wait_gone(s.pid, s.port, timeout=15)
    assert not s.alive() and not left and free, (left, free)
    await backend.restart()
    assert s.alive() and set(s.listed_models()) >= {"base", "tuned"}
    answer = "".join([d async for d in chat.send("Say hello.")])
    assert answer.strip() and len(chat.history) == 1
    await backend.aclose()


def test_stop_ends_the_process_group_and_frees_the_port(vllm_base_and_tuned):
    s = vllm_base_and_tuned
    pgid, port = s.pid, s.port
    assert group_members(pgid) and not port_is_free(port)
    t0 = time.monotonic()
    s.stop()
    took = time.monotonic() - t0
    # stop() returns only when everything is gone: check at once, no waiting
    assert not group_members(pgid), f"processes left in the server's group: {group_members(pgid)}"
    assert port_is_free(port), f"port {port} still taken after stop()"
    assert not s.alive() and s.pid is None and took < 30


def test_cli_serve_merged_model_json_and_no_orphans_after_kill_9(tiny_tuned, tmp_path):
    cmd = [sys.executable, "-m", "tuitune.cli", "--project", str(tmp_path), "serve", str(tiny_tuned["merged"]),
           "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line, f"serve printed nothing; stderr:\n{proc.stderr.read()[-3000:]}"
        info = json.loads(line)
        assert set(info) >= {"base_url", "api_key", "models", "pid"}, info
        assert info["pid"] == proc.pid, (info, proc.pid)
        assert info["models"] == ["merged"]
        assert stream_text(info["base_url"], info["api_key"], "merged", "Who are you?").strip()
        vllm_pgid = info["servers"][0]["vllm_pid"]
        port = int(info["base_url"].rsplit(":", 1)[1].split("/")[0])
        assert group_members(vllm_pgid)
        proc.kill()  # SIGKILL: no handler, no atexit; the guard must notice and end vLLM
        proc.wait(10)
        left, free = wait_gone(vllm_pgid, port)
        assert not left, f"orphans after the parent was killed: {left}"
        assert free
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cli_serve_sigterm_during_start_leaves_nothing(embedded_model, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "tuitune.cli", "--project", str(tmp_path), "serve",
                             str(embedded_model)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # wait until vLLM's engine-core process exists (the whole tree is up, not ready yet)
        deadline, guard = time.monotonic() + 300, None
        while time.monotonic() < deadline:
            kids = psutil.Process(proc.pid).children()
            guard = kids[0] if kids else None
            if guard and any("EngineCore" in " ".join(p.cmdline()) or p.name().startswith("VLLM")
                             for p in guard.children(recursive=True)):
                break
            time.sleep(0.5)
        assert guard is not None, "tuitune serve did not start vLLM"
        pgid = guard.pid
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        left = group_members(pgid)
        assert not left, f"processes left after SIGTERM: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
