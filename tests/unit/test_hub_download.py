"""Downloads through the real huggingface_hub client against a local stand-in for the Hub (tests/hub_server.py):
only the files a run needs, progress, the cache layout the offline lookup then finds, the disk check before any
file is fetched, gated/private refusals, and a download killed mid-way that continues with what it had not finished."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from hub_cache import use_cache
from hub_server import FakeHub, Repo, point_at

from tuitune.core import hub, models

COMMIT = "d" * 40
REPO = "TinyOrg/tiny-chat"


def repo_files(weights: bytes) -> dict[str, bytes]:
    return {"config.json": json.dumps({"model_type": "llama"}).encode(),
            "generation_config.json": b"{}",
            "tokenizer.json": b'{"version": "1.0"}',
            "tokenizer_config.json": json.dumps({"chat_template": "{{ messages }}"}).encode(),
            "README.md": b"# tiny\n",
            "model.safetensors": weights,
            "pytorch_model.bin": weights[::-1],  # the duplicate copy a run must not download
            "model.gguf": b"GGUF" + weights[:1000],
            "onnx/model.onnx": b"onnx" * 100}


@pytest.fixture
def online(tmp_path, monkeypatch):
    """The Hugging Face cache in tmp_path, online, HF_ENDPOINT at a started FakeHub (set fake.repos)."""
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    use_cache(monkeypatch, cache, offline=False)
    with FakeHub([]) as fake:
        point_at(monkeypatch, fake.url)
        yield fake, cache


def test_download_fetches_only_what_a_run_needs_with_progress(online, tmp_path, monkeypatch):
    fake, cache = online
    weights = os.urandom(600_000)
    fake.repos[REPO] = Repo(REPO, COMMIT, repo_files(weights))
    seen = []
    found = models.locate(tmp_path / "models", REPO, progress=lambda stage, frac: seen.append((stage, frac)))
    snap = cache / "models--TinyOrg--tiny-chat" / "snapshots" / COMMIT
    assert found == models.Located(snap, REPO, COMMIT, "huggingface")
    assert sorted(p.name for p in snap.iterdir()) == ["config.json", "generation_config.json", "model.safetensors",
                                                      "tokenizer.json", "tokenizer_config.json"]
    assert hashlib.sha256((snap / "model.safetensors").read_bytes()).digest() == hashlib.sha256(weights).digest()
    assert sorted(set(fake.file_gets())) == ["config.json", "generation_config.json", "model.safetensors",
                                             "tokenizer.json", "tokenizer_config.json"]
    fracs = [f for _, f in seen]
    assert fracs == sorted(fracs) and fracs[-1] == pytest.approx(1.0) and len(fracs) > 2
    assert seen[-2][0].startswith(f"downloading {REPO}: ") and seen[-1] == (f"downloaded {REPO}: 0.6 MiB", 1.0)
    # afterwards it is in the cache: found offline with no request at all
    use_cache(monkeypatch, cache, offline=True)
    before = len(fake.requests)
    assert models.locate(tmp_path / "models", REPO) == found
    assert len(fake.requests) == before


def test_disk_space_is_checked_before_any_file_is_fetched(online, tmp_path, monkeypatch):
    fake, cache = online
    fake.repos[REPO] = Repo(REPO, COMMIT, repo_files(os.urandom(300_000)))
    monkeypatch.setattr(hub, "free_bytes", lambda folder: hub.HEADROOM + 1000)  # a nearly full disk
    with pytest.raises(hub.DiskSpaceError, match=f"to download {REPO}: its 5 file"):
        models.locate(tmp_path / "models", REPO)
    assert fake.file_gets() == [] and not list(cache.rglob("*.safetensors*"))


def test_gated_and_unknown_repositories_name_the_model_and_hf_token(online, tmp_path):
    fake, _ = online
    fake.repos["Org/gated"] = Repo("Org/gated", COMMIT, repo_files(b"w"), gated=True)
    with pytest.raises(hub.AccessError, match=r"Org/gated is a gated model: accept its terms .* HF_TOKEN"):
        models.locate(tmp_path / "models", "Org/gated")
    with pytest.raises(hub.AccessError, match=r"Org/nope was not found .* private .* HF_TOKEN"):
        models.locate(tmp_path / "models", "Org/nope")


def test_a_killed_download_keeps_its_finished_files_and_continues(online, tmp_path, monkeypatch):
    """`tuitune models download` killed while the second weights shard downloads: the rerun fetches only what
    was not finished (never the first shard again) and removes the partial file the killed process left."""
    fake, cache = online
    shard1, shard2 = os.urandom(2**20), os.urandom(4 * 2**20)
    files = {k: v for k, v in repo_files(b"").items() if not k.startswith("model.")}
    files.update({"model-00001-of-00002.safetensors": shard1, "model-00002-of-00002.safetensors": shard2,
                  "model.safetensors.index.json": json.dumps({"weight_map": {
                      "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}).encode()})
    fake.repos[REPO] = Repo(REPO, COMMIT, files, slow={"model-00002-of-00002.safetensors": 0.05})
    proc = subprocess.Popen([sys.executable, "-m", "tuitune.cli", "models", "download", REPO],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "TUITUNE_HOME": str(tmp_path)})
    repo_dir = cache / "models--TinyOrg--tiny-chat"
    shard1_blob = repo_dir / "blobs" / hashlib.sha256(shard1).hexdigest()
    deadline = time.monotonic() + 60
    while not (shard1_blob.exists() and list(repo_dir.glob("blobs/*.incomplete"))):  # shard 2 on its way
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(repo_dir.glob("blobs/*.incomplete"))  # what the kill left
    gets_before = len(fake.file_gets())
    use_cache(monkeypatch, cache, offline=True)
    with pytest.raises(hub.OfflineError):  # the half snapshot is not taken for a model
        models.locate(tmp_path / "models", REPO)
    use_cache(monkeypatch, cache, offline=False)

    fake.repos[REPO].slow = {}
    found = models.locate(tmp_path / "models", REPO)
    assert (found.path / "model-00002-of-00002.safetensors").read_bytes() == shard2
    assert (found.path / "model-00001-of-00002.safetensors").read_bytes() == shard1
    refetched = fake.file_gets()[gets_before:]
    assert "model-00002-of-00002.safetensors" in refetched
    assert "model-00001-of-00002.safetensors" not in refetched  # finished before the kill: kept
    assert not list(repo_dir.glob("blobs/*.incomplete"))  # the killed process's partial file is gone


def test_train_downloads_a_missing_base_with_a_progress_bar(online, tmp_path, monkeypatch):
    """`tuitune train --base ORG/NAME` not cached: downloaded first with the app's own progress bar; here the
    project has no data, so the run stops right after (exit 2) and the model stays in the cache for next time."""
    from click.testing import CliRunner

    from tuitune.cli import main

    fake, cache = online
    fake.repos[REPO] = Repo(REPO, COMMIT, repo_files(os.urandom(200_000)))
    monkeypatch.setenv("TUITUNE_HOME", str(tmp_path / "home"))
    (tmp_path / "proj").mkdir()
    out = CliRunner().invoke(main, ["--project", str(tmp_path / "proj"), "train", "--base", REPO, "--no-bf16"])
    assert out.exit_code == 2, out.output
    assert out.output.splitlines()[-2].startswith(f"downloaded {REPO}: 0.2 MiB") and "100%" in out.output
    assert (cache / "models--TinyOrg--tiny-chat" / "snapshots" / COMMIT / "model.safetensors").exists()
