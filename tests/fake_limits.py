"""A fake OpenAI-compatible chat endpoint, run in a thread of the test process, that records when each request
arrived and how many were in flight at once (what a real server does not report), or answers one error status
(401 on demand). For fault and timing tests of the teacher pool only.

    with serve(delay=0.05) as fake:
        ...  # fake.url is the base_url; fake.arrivals, fake.max_in_flight, fake.bodies afterwards
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Fake:
    def __init__(self, status: int, delay: float):
        self.status, self.delay = status, delay
        self.lock = threading.Lock()
        self.arrivals: list[float] = []  # time.monotonic() of each POST
        self.bodies: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.server = _Server(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @property
    def posts(self) -> int:
        return len(self.arrivals)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 drops connections when 40 requests start at once


def _handler(fake: Fake):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            with fake.lock:
                fake.arrivals.append(time.monotonic())
                fake.bodies.append(body)
                fake.in_flight += 1
                fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                n = len(fake.arrivals)
            try:
                time.sleep(fake.delay)
                if fake.status != 200:
                    out = {"error": {"message": f"status {fake.status}", "type": "invalid_request_error"}}
                else:
                    out = {"id": f"fake-{n}", "object": "chat.completion", "created": int(time.time()),
                           "model": body.get("model", ""),
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": f"answer {n}"},
                                        "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}
                raw = json.dumps(out).encode()
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
            finally:
                with fake.lock:
                    fake.in_flight -= 1

    return Handler


@contextlib.contextmanager
def serve(*, status: int = 200, delay: float = 0.0):
    fake = Fake(status, delay)
    thread = threading.Thread(target=fake.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
        thread.join(5)
