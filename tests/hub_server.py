"""A local stand-in for the Hugging Face Hub's HTTP API, for download tests on a machine without network.

huggingface_hub itself (HfApi.model_info, snapshot_download, hf_hub_download) talks to it through HF_ENDPOINT, so
the real client code runs: file selection by allow_patterns, the cache layout it writes, `.incomplete` blobs and
Range-resumed downloads, HTTP errors mapped to GatedRepoError / RepositoryNotFoundError. It serves only the
endpoints those calls use, and injects the faults the tests need (a gated repository, a slow file to kill a
download in the middle of). Every request is logged as (method, path, Range header).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".onnx", ".pth", ".msgpack")


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Repo:
    def __init__(self, repo_id: str, commit: str, files: dict[str, bytes], *, gated: bool = False,
                 slow: dict[str, float] | None = None):
        self.id, self.commit, self.files, self.gated = repo_id, commit, files, gated
        self.slow = slow or {}  # file -> seconds to sleep per 64 KiB chunk

    def entry(self, name: str) -> dict:
        data = self.files[name]
        out = {"size": len(data), "oid": _git_sha1(data)}
        if name.endswith(LFS_SUFFIXES):
            out["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return out


class FakeHub:
    def __init__(self, repos: list[Repo]):
        self.repos = {r.id: r for r in repos}
        self.requests: list[tuple[str, str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub._handle(self, head=True)

            def do_GET(self):
                hub._handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def file_gets(self) -> list[str]:
        return [p.split("/resolve/", 1)[1].split("/", 1)[1] for m, p, _ in self.requests
                if m == "GET" and "/resolve/" in p]

    # ---- request handling -------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, *, head: bool) -> None:
        path = unquote(urlparse(h.path).path)
        self.requests.append(("HEAD" if head else "GET", path, h.headers.get("Range", "")))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo = self._repo(h, f"{parts[2]}/{parts[3]}")
            if repo is None:
                return
            if len(parts) >= 5 and parts[4] == "tree":
                return self._json(h, [{"type": "file", "path": n, **repo.entry(n)} for n in sorted(repo.files)])
            siblings = [{"rfilename": n, "size": len(d), "blobId": repo.entry(n)["oid"],
                         **({"lfs": {"sha256": repo.entry(n)["lfs"]["oid"], "size": len(d), "pointerSize": 134}}
                            if "lfs" in repo.entry(n) else {})} for n, d in sorted(repo.files.items())]
            return self._json(h, {"id": repo.id, "modelId": repo.id, "sha": repo.commit, "private": False,
                                  "siblings": siblings})
        if len(parts) >= 5 and parts[2] == "resolve":
            repo = self._repo(h, f"{parts[0]}/{parts[1]}")
            if repo is None:
                return
            name = "/".join(parts[4:])
            if name not in repo.files:
                return self._error(h, 404, "EntryNotFound", f"{name} not found", commit=repo.commit)
            return self._file(h, repo, name, head=head)
        self._error(h, 404, "RepoNotFound", "no such endpoint")

    def _repo(self, h, repo_id: str) -> Repo | None:
        repo = self.repos.get(repo_id)
        if repo is None:
            self._error(h, 401, "RepoNotFound", "Repository not found")
            return None
        if repo.gated:
            self._error(h, 403, "GatedRepo", "Access to this model is restricted: accept the conditions")
            return None
        return repo

    def _json(self, h, obj) -> None:
        body = json.dumps(obj).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _error(self, h, code: int, error_code: str, message: str, commit: str | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        h.send_response(code)
        h.send_header("X-Error-Code", error_code)
        h.send_header("X-Error-Message", message)
        if commit:
            h.send_header("X-Repo-Commit", commit)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _file(self, h, repo: Repo, name: str, *, head: bool) -> None:
        data = repo.files[name]
        entry = repo.entry(name)
        start = 0
        rng = h.headers.get("Range", "")
        if rng.startswith("bytes=") and not head:
            start = int(rng[6:].split("-")[0] or 0)
        h.send_response(206 if start else 200)
        h.send_header("X-Repo-Commit", repo.commit)
        h.send_header("ETag", f'"{entry["oid"]}"')
        if "lfs" in entry:
            h.send_header("X-Linked-Etag", f'"{entry["lfs"]["oid"]}"')
            h.send_header("X-Linked-Size", str(len(data)))
        h.send_header("Content-Length", str(len(data) - start))
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.end_headers()
        if head:
            return
        delay = repo.slow.get(name, 0.0)
        try:
            for i in range(start, len(data), 65536):
                h.wfile.write(data[i:i + 65536])
                h.wfile.flush()
                if delay:
                    time.sleep(delay)
        except (BrokenPipeError, ConnectionResetError):
            pass


def point_at(monkeypatch, url: str) -> None:
    """huggingface_hub in this process and in subprocesses talks to `url` (HF_ENDPOINT), over plain HTTP."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(constants, "ENDPOINT", url)  # both read at import: set for this process too
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
