"""A fake OpenAI-compatible chat endpoint for fault-injection tests (the one place a fake is allowed: a real
server cannot answer 429, 500, slow, truncated JSON, prose around JSON or connection resets on demand).

Run: python tests/fake_teacher.py --mode ok|faults [--delay S] [--no-schema]
Prints the port on its first stdout line. GET /stats returns what it served.

Every sample it writes is unique (random words from a fixed vocabulary + a serial number), except where the
fault script asks for a repeat, so the synth engine's counters can be checked exactly.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "so", "ta", "vi", "ze", "po", "qu", "da", "fe", "gi", "ho", "ju"]
WORDS = [a + b + c for a in SYLLABLES for b in SYLLABLES for c in ("n", "r", "s", "l")][:600]
# The fault script: request k (counted over all POSTs, retries included) gets FAULTS[k % len(FAULTS)].
FAULTS = ["ok", "429", "prose", "500", "truncated", "reset", "fenced", "slow", "dup", "garbage", "ok"]
# Replies no real endpoint should send but proxies, captive portals and broken servers do (mode "hostile"):
# an HTML page with status 200, a JSON body cut off mid-way, JSON that is not a chat completion, and a
# 200k-character brace-heavy reply. Modes "html", "cutbody", "notchat" and "braces" send only that kind.
HOSTILE = ["ok", "html", "ok", "cutbody", "notchat", "ok", "braces"]


class State:
    def __init__(self, mode: str, delay: float, no_schema: bool, slow: float):
        self.mode, self.delay, self.no_schema, self.slow = mode, delay, no_schema, slow
        self.lock = threading.Lock()
        self.posts = 0
        self.serial = 0
        self.behaviours: dict[str, int] = {}
        self.samples_sent = 0
        self.last_sample: dict | None = None
        self.rng = random.Random(7)

    def sample(self) -> dict:
        with self.lock:
            self.serial += 1
            words = self.rng.sample(WORDS, 8)
            s = {"instruction": f"Explain {' '.join(words[:5])} item {self.serial}", "input": "",
                 "output": f"It is {' '.join(words[5:])} and more, number {self.serial}."}
            self.last_sample = s
            return s


def make_handler(state: State):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):  # quiet
            pass

        def _send(self, code: int, body: bytes, headers: dict | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path.endswith("/stats"):
                with state.lock:
                    body = {"posts": state.posts, "behaviours": state.behaviours, "samples_sent": state.samples_sent}
                self._send(200, json.dumps(body).encode())
            else:
                self._send(404, b"{}")

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            req = json.loads(self.rfile.read(length) or b"{}")
            with state.lock:
                k = state.posts
                state.posts += 1
            if state.no_schema and "response_format" in req:
                self._send(400, json.dumps({"error": {"message": "response_format json_schema is not supported",
                                                      "type": "invalid_request_error"}}).encode())
                return
            cycle = {"faults": FAULTS, "hostile": HOSTILE}.get(state.mode, [state.mode])
            behaviour = cycle[k % len(cycle)]
            with state.lock:
                state.behaviours[behaviour] = state.behaviours.get(behaviour, 0) + 1
            if state.delay:
                time.sleep(state.delay)
            user = req["messages"][-1]["content"]
            m = re.search(r"(?:Write|List) (\d+) (?:new|distinct)", user)
            n = int(m.group(1)) if m else 1
            if behaviour == "429":
                self._send(429, b'{"error": {"message": "rate limited"}}', {"retry-after-ms": "20"})
                return
            if behaviour == "500":
                self._send(500, b'{"error": {"message": "boom"}}')
                return
            if behaviour == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
                return
            if behaviour == "slow":
                time.sleep(state.slow)
            if behaviour == "html":
                page = b"<!DOCTYPE html><html><body><h1>Welcome to nginx!</h1></body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
                return
            if behaviour == "notchat":
                self._send(200, b'{"hello": "world", "choices": "none"}')
                return
            if '{"topics"' in user:
                content = json.dumps({"topics": [f"topic {i} {WORDS[i]}" for i in range(n)]})
            elif "samples" not in user and "inputs" not in user:  # an answer request (second pass)
                content = f"Answer {state.sample()['output']}"
            elif behaviour == "dup" and state.last_sample:
                content = json.dumps({"samples": [state.last_sample] + [state.sample() for _ in range(n - 1)]})
            else:
                items = [state.sample() for _ in range(n)]
                if "inputs" in user and '"inputs"' in user:
                    items = [{"instruction": s["instruction"], "input": ""} for s in items]
                    content = json.dumps({"inputs": items})
                else:
                    content = json.dumps({"samples": items}, indent=1)
                if behaviour == "truncated":  # cut inside the last item: the complete ones survive
                    content = content[: content.rfind('"output"') + 12]
                elif behaviour == "prose":
                    content = f"Sure! Here are the examples you asked for:\n{content}\nI hope these help."
                elif behaviour == "fenced":
                    content = f"```json\n{content}\n```"
                elif behaviour == "garbage":
                    content = "I am sorry, I cannot produce that."
                elif behaviour == "braces":
                    content = "{" * 200_000
            with state.lock:
                state.samples_sent += content.count('"instruction"')
            finish = "length" if behaviour == "truncated" else "stop"
            body = {"id": f"fake-{k}", "object": "chat.completion", "created": int(time.time()), "model": req["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                 "finish_reason": finish}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}}
            raw = json.dumps(body).encode()
            if behaviour == "cutbody":  # the HTTP body itself ends mid-JSON (a proxy cut it)
                raw = raw[: len(raw) // 2]
            try:
                self._send(200, raw)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                pass

    return Handler


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["ok", "faults", "hostile", "html", "cutbody", "notchat", "braces"],
                    default="ok")
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--slow", type=float, default=3.0, help="seconds a 'slow' answer takes")
    ap.add_argument("--no-schema", action="store_true", help="answer 400 to response_format")
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    server = QuietServer(("127.0.0.1", a.port), make_handler(State(a.mode, a.delay, a.no_schema, a.slow)))
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())


# ---- for tests: start the fake in a subprocess ------------------------------------------------------------

def spawn(*args: str):
    """Start this script as a subprocess; returns (Popen, base_url). The caller kills it (proc.kill())."""
    import subprocess

    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}/v1"


@contextlib.contextmanager
def served(*args: str):
    """A fake teacher for the duration of a `with` block: yields its base_url, kills it at the end."""
    proc, url = spawn(*args)
    try:
        yield url
    finally:
        proc.kill()
        proc.wait()


def stats(base_url: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/stats", timeout=5) as r:
        return json.loads(r.read())


def load():
    """Import this file as a module from a test (tests/ is not a package)."""
    return sys.modules[__name__]
