"""`tuitune models add NAME ORG/NAME`, `tuitune models` listing the Hugging Face cache, `models download` offline."""

from __future__ import annotations

import json

from click.testing import CliRunner
from hub_cache import add_snapshot, tiny_model, use_cache

from tuitune.cli import main

C1 = "3" * 40


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_models_add_an_id_then_list_it_and_the_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    use_cache(monkeypatch, cache, offline=True)
    monkeypatch.setenv("TUITUNE_HOME", str(tmp_path / "home"))

    out = run("models", "add", "qwen", "Qwen/Qwen2.5-0.5B-Instruct")
    assert out.exit_code == 0, out.output
    assert "Registered qwen -> Qwen/Qwen2.5-0.5B-Instruct" in out.output and "Not downloaded yet" in out.output
    registry = json.loads((tmp_path / "home" / "models" / "registry.json").read_text())
    assert registry == {"qwen": "Qwen/Qwen2.5-0.5B-Instruct"}
    # using it offline, uncached: the one offline error, exit 2
    out = run("models", "download", "qwen")
    assert out.exit_code == 2 and "Qwen/Qwen2.5-0.5B-Instruct is not on this machine" in out.output

    snap = add_snapshot(cache, "Qwen/Qwen2.5-0.5B-Instruct", tiny_model(), C1)
    out = run("models", "add", "qwen", "Qwen/Qwen2.5-0.5B-Instruct")
    assert out.exit_code == 0 and f"In the cache: {snap} (commit {C1})" in out.output
    out = run("models", "download", "qwen")  # already there: no network needed, prints its folder
    assert out.exit_code == 0 and str(snap) in out.output

    out = run("models")
    assert out.exit_code == 0, out.output
    assert "qwen" in out.output and "hub" in out.output
    assert "In the Hugging Face cache" in out.output
    assert f"Qwen/Qwen2.5-0.5B-Instruct@{C1[:12]} [main]" in out.output and "chat template" in out.output
    listed = json.loads(run("models", "--json").output)
    assert listed[0]["name"] == "smollm2-135m-instruct"
    entry = next(m for m in listed if m["name"] == "qwen")
    assert entry["kind"] == "hub" and entry["ready"] and entry["path"] == str(snap)
    cached = next(m for m in listed if m["kind"] == "hub-cache")
    assert cached["id"] == "Qwen/Qwen2.5-0.5B-Instruct" and cached["revision"] == C1 and cached["chat_template"]
    assert cached["size"] == sum(len(v) for v in tiny_model().values())


def test_models_add_refuses_what_is_neither_a_folder_nor_an_id(tmp_path, monkeypatch):
    monkeypatch.setenv("TUITUNE_HOME", str(tmp_path / "home"))
    out = run("models", "add", "x", str(tmp_path / "no-such-folder"))
    assert out.exit_code == 2 and "is not a folder" in out.output
    assert not (tmp_path / "home" / "models" / "registry.json").exists()
