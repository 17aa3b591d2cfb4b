"""e2e: a training run whose base is a Hub ID, resolved OFFLINE from a real Hugging Face cache layout holding the
embedded model's files (tests/hub_cache.py: blobs named by sha256 / git sha1, snapshots as symlinks, refs), read
by huggingface_hub itself; the worker trains 2 steps with HF_HUB_OFFLINE=1 (no network needed). The revision pin
picks the older of two cached commits; an uncached ID offline is one clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hub_cache import add_snapshot, model_files, use_cache

from tuitune.core.data.samples import Sample
from tuitune.core.data.store import Store
from tuitune.core.training import jobs
from tuitune.core.training.config import TrainConfig

pytestmark = pytest.mark.e2e

REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
OLD, MAIN = "a" * 40, "b" * 40
# the shortest real run: 2 steps, tiny records and max_length, no merge / stop check / verdict / bf16 probe
SHORT = ["--max-steps", "2", "--max-length", "48", "--lora-r", "4", "--batch-size", "2", "--no-merge",
         "--check-prompts", "0", "--no-bf16", "--holdout", "0"]


@pytest.fixture
def hf_cache(tmp_path, monkeypatch, embedded_model):
    """Two cached commits of REPO: OLD (tag v1.0) and MAIN (main); they differ in their README."""
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    files = model_files(embedded_model)
    add_snapshot(cache, REPO, {**files, "README.md": b"old revision\n"}, OLD, refs=("v1.0",))
    add_snapshot(cache, REPO, {**files, "README.md": b"main revision\n"}, MAIN, refs=("main",))
    use_cache(monkeypatch, cache, offline=True)
    return cache


def make_project(path):
    with Store.open(path, create=True) as store:
        store.set_task(system_prompt="Answer with one word.")
        store.add_samples([Sample(f"Say the number {i}.", f"{i}", status="accepted") for i in range(6)])
    return path


def tuitune(project, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "tuitune.cli", "--project", str(project), *args],
                          capture_output=True, text=True, timeout=timeout, check=False, env=dict(os.environ))


def test_train_from_a_pinned_hub_id_offline(hf_cache, tmp_path, home, monkeypatch):
    from huggingface_hub import scan_cache_dir, snapshot_download

    # the real library reads the layout: both revisions, main -> MAIN, the pin -> OLD
    repo = next(r for r in scan_cache_dir(hf_cache).repos if r.repo_id == REPO)
    assert {r.commit_hash: sorted(r.refs) for r in repo.revisions} == {OLD: ["v1.0"], MAIN: ["main"]}
    assert snapshot_download(REPO, local_files_only=True).endswith(MAIN)
    assert snapshot_download(REPO, revision=OLD, local_files_only=True).endswith(OLD)

    monkeypatch.setenv("TUITUNE_HOME", str(home))
    project = make_project(tmp_path / "proj")
    # `tuitune models` lists it from the cache
    listed = tuitune(project, "models")
    assert listed.returncode == 0 and f"{REPO}@{MAIN[:12]} [main]" in listed.stdout, listed.stderr

    out = tuitune(project, "train", "--base", f"{REPO}@{OLD}", *SHORT, "--foreground")
    assert out.returncode == 0, out.stderr[-3000:]
    run_id = out.stdout.strip().splitlines()[0]
    d = jobs.run_dir(project, run_id)
    cfg = TrainConfig.load(d / "config.yaml")
    # the config records what the ID resolved to: the pinned snapshot folder, the ID and the commit
    assert cfg.base == f"{REPO}@{OLD}" and cfg.base_id == REPO and cfg.base_revision == OLD
    assert cfg.base_path == str(hf_cache / "models--HuggingFaceTB--SmolLM2-135M-Instruct" / "snapshots" / OLD)
    steps = [e["step"] for e in jobs.read_events(d)[0] if e["event"] == "step"]
    assert steps == [1, 2]
    assert "HF_HUB_OFFLINE" in os.environ  # the worker inherited offline mode and needed no network
    assert jobs.run_info(d).status == "done"

    # serve/chat/eval name models the same way (core.serving.plan.resolve_spec): the ID is served from the cache
    from click.testing import CliRunner

    from tuitune.cli import main

    planned = CliRunner().invoke(main, ["--project", str(project), "serve", REPO, "--dry-run", "--json"])
    assert planned.exit_code == 0, planned.output
    command = json.loads(planned.output)["servers"][0]["command"]
    assert str(hf_cache / "models--HuggingFaceTB--SmolLM2-135M-Instruct" / "snapshots" / MAIN) in command
    assert REPO in command  # the served model name is the ID


def test_uncached_id_offline_is_one_clear_error(tmp_path, home, monkeypatch):
    (tmp_path / "hf" / "hub").mkdir(parents=True)
    use_cache(monkeypatch, tmp_path / "hf" / "hub", offline=True)
    monkeypatch.setenv("TUITUNE_HOME", str(home))
    project = make_project(tmp_path / "proj")
    out = tuitune(project, "train", "--base", "Qwen/Qwen2.5-0.5B-Instruct", *SHORT, timeout=120)
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: Qwen/Qwen2.5-0.5B-Instruct is not on this machine")
    assert "huggingface-cli download Qwen/Qwen2.5-0.5B-Instruct" in errors[0]
    assert "tuitune models add NAME FOLDER" in errors[0]
    assert not (project / "runs").exists() or not list((project / "runs").iterdir())
