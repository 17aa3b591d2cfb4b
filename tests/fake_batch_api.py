"""A fake hosted Batch API (OpenAI's files + batches routes) for fault tests only: no hosted API is reachable from
here, and a real one cannot be told to expire a batch, fail some lines or drop others on demand.

`serve(mode)` runs it in a thread and yields (base_url, state). Modes: ok (every line answered), expire (the batch
expires with the first half answered), failedlines (every third line in the error file), partial (the last two
lines missing from the output, no error file), invalid (the batch fails validation, no files). `state.mode` may be
changed between batches. Answers are unique samples from fake_teacher's generator.
"""

from __future__ import annotations

import contextlib
import email
import itertools
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import fake_teacher


class State:
    def __init__(self, mode: str):
        self.mode = mode
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.polls: dict[str, int] = {}
        self.ids = itertools.count(1)
        self.samples = fake_teacher.State("ok", 0, False, 0)
        self.created = 0

    def answer(self, line: dict) -> dict:
        user = line["body"]["messages"][-1]["content"]
        m = re.search(r"Write (\d+) new", user)
        n = int(m.group(1)) if m else 1
        content = json.dumps({"samples": [self.samples.sample() for _ in range(n)]})
        return {"id": f"resp-{line['custom_id']}", "custom_id": line["custom_id"], "error": None,
                "response": {"status_code": 200, "request_id": "x", "body": {
                    "id": "c", "object": "chat.completion", "created": 0, "model": line["body"]["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}}}}

    def finish(self, batch: dict) -> None:
        lines = [json.loads(x) for x in self.files[batch["input_file_id"]].decode().splitlines() if x.strip()]
        mode = batch["mode"]
        out, err = [], []
        if mode == "invalid":
            batch.update(status="failed", errors={"object": "list", "data": [
                {"code": "invalid_json_line", "line": 1, "message": "this line is not valid", "param": None}]})
            return
        for i, line in enumerate(lines):
            if mode == "expire" and i >= len(lines) // 2:
                continue
            if mode == "partial" and i >= len(lines) - 2:
                continue
            if mode == "failedlines" and i % 3 == 2:
                err.append({"id": f"e{i}", "custom_id": line["custom_id"], "error": None, "response": {
                    "status_code": 500, "request_id": "x", "body": {"error": {"message": "the model crashed"}}}})
                continue
            out.append(self.answer(line))
        for key, rows in (("output_file_id", out), ("error_file_id", err)):
            if rows:
                fid = f"file-{next(self.ids)}"
                self.files[fid] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                batch[key] = fid
        batch["status"] = "expired" if mode == "expire" else "completed"
        batch["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(err)}


def _handler(state: State):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _send(self, code: int, body: dict | bytes) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json" if not isinstance(body, bytes) else
                             "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.endswith("/files"):
                msg = email.message_from_bytes(b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n"
                                               + body)
                content = next(p.get_payload(decode=True) for p in msg.get_payload() if p.get_filename())
                fid = f"file-{next(state.ids)}"
                state.files[fid] = content
                self._send(200, {"id": fid, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                                 "filename": "in.jsonl", "purpose": "batch", "status": "processed"})
            elif self.path.endswith("/batches"):
                req = json.loads(body)
                bid = f"batch_{next(state.ids)}"
                state.created += 1
                state.batches[bid] = {"id": bid, "object": "batch", "endpoint": req["endpoint"],
                                      "input_file_id": req["input_file_id"], "completion_window": "24h",
                                      "status": "validating", "created_at": int(time.time()), "mode": state.mode,
                                      "metadata": req.get("metadata")}
                self._send(200, {k: v for k, v in state.batches[bid].items() if k != "mode"})
            else:
                self._send(404, {"error": {"message": "no such route"}})

        def do_GET(self):
            m = re.search(r"/batches/([^/]+)$", self.path)
            if m and m.group(1) in state.batches:
                b = state.batches[m.group(1)]
                state.polls[b["id"]] = state.polls.get(b["id"], 0) + 1
                if b["status"] not in ("completed", "expired", "failed"):
                    if state.polls[b["id"]] == 1:
                        b["status"] = "in_progress"
                    else:
                        state.finish(b)
                self._send(200, {k: v for k, v in b.items() if k != "mode"})
                return
            m = re.search(r"/files/([^/]+)/content$", self.path)
            if m and m.group(1) in state.files:
                self._send(200, state.files[m.group(1)])
                return
            self._send(404, {"error": {"message": "not found"}})

    return Handler


@contextlib.contextmanager
def serve(mode: str = "ok"):
    state = State(mode)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", state
    finally:
        server.shutdown()
        server.server_close()
