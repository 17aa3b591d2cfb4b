"""Hub IDs resolved from a real Hugging Face cache layout (tests/hub_cache.py) by huggingface_hub itself, offline;
the errors for what is not there (offline, no network, incomplete, ModelScope missing, gated/private)."""

from __future__ import annotations

import json

import pytest
from hub_cache import add_snapshot, tiny_model, use_cache

from tuitune.core import hub, models

C1, C2 = "1" * 40, "2" * 40
REPO = "TinyOrg/tiny-chat"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    c = tmp_path / "hf" / "hub"
    c.mkdir(parents=True)
    use_cache(monkeypatch, c, offline=True)
    return c


def test_offline_resolution_reads_the_cache_with_huggingface_hub(cache, tmp_path):
    from huggingface_hub import scan_cache_dir, snapshot_download

    add_snapshot(cache, REPO, tiny_model("old"), C1, refs=("v1.0",))
    snap2 = add_snapshot(cache, REPO, tiny_model("new"), C2, refs=("main",))
    # the real library sees the layout
    repo = next(r for r in scan_cache_dir(cache).repos if r.repo_id == REPO)
    assert {r.commit_hash for r in repo.revisions} == {C1, C2}
    assert snapshot_download(REPO, local_files_only=True) == str(snap2)

    mdir = tmp_path / "models"
    found = models.locate(mdir, REPO)
    assert found == models.Located(snap2, REPO, C2, "huggingface")
    assert json.loads((found.path / "config.json").read_text())["note"] == "new"
    # a pin picks its snapshot: a commit, or a ref other than main (a tag here)
    for pin in (C1, "v1.0"):
        old = models.locate(mdir, f"{REPO}@{pin}")
        assert old.revision == C1 and old.path.name == C1
        assert json.loads((old.path / "config.json").read_text())["note"] == "old"
    assert models.resolve(mdir, f"{REPO}@{C2}") == snap2


def test_offline_and_not_cached_is_one_error_saying_how_to_get_it(cache, tmp_path):
    with pytest.raises(hub.OfflineError) as e:
        models.locate(tmp_path / "models", "Qwen/Qwen2.5-0.5B-Instruct@main")
    msg = str(e.value)
    assert "Qwen/Qwen2.5-0.5B-Instruct@main is not on this machine" in msg
    assert "huggingface-cli download Qwen/Qwen2.5-0.5B-Instruct --revision main" in msg
    assert "tuitune models add NAME FOLDER" in msg and "HF_HUB_OFFLINE" in msg
    assert "\n" not in msg


def test_no_network_without_offline_mode_is_the_same_error(cache, tmp_path, monkeypatch):
    """HF_HUB_OFFLINE unset, the Hub unreachable (a closed local port as the endpoint): the real client's
    connection error becomes the same offline message; nothing is written to the cache."""
    from huggingface_hub import constants

    use_cache(monkeypatch, cache, offline=False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(hub.OfflineError, match="is not on this machine"):
        models.locate(tmp_path / "models", "Org/not-here")
    assert not list(cache.iterdir())


def test_an_incomplete_snapshot_is_not_used(cache, tmp_path):
    """A download killed before all shards arrived: the index names a shard the snapshot lacks."""
    files = tiny_model()
    del files["model.safetensors"]
    files["model-00001-of-00002.safetensors"] = b"shard one"
    files["model.safetensors.index.json"] = json.dumps({"weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}).encode()
    add_snapshot(cache, REPO, files, C1)
    assert "model-00002-of-00002.safetensors" in models.missing_parts(cache / f"models--TinyOrg--tiny-chat/snapshots/{C1}")
    with pytest.raises(hub.OfflineError):
        models.locate(tmp_path / "models", REPO)
    assert hub.cached_models() == []  # not listed as usable either


def test_registered_name_for_a_hub_id_and_the_cache_listing(cache, tmp_path):
    mdir = tmp_path / "models"
    assert models.register(mdir, "tiny", REPO) == REPO
    listed = {m.name: m for m in models.list_models(mdir)}
    assert listed["tiny"].kind == "hub" and not listed["tiny"].ready and "not downloaded" in listed["tiny"].note
    snap = add_snapshot(cache, REPO, tiny_model(), C1)
    assert models.locate(mdir, "tiny") == models.Located(snap, REPO, C1, "huggingface")
    listed = {m.name: m for m in models.list_models(mdir)}
    assert listed["tiny"].ready and listed["tiny"].path == snap
    no_chat = tiny_model()
    no_chat["tokenizer_config.json"] = b"{}"
    add_snapshot(cache, "Org/base-only", no_chat, C2)
    add_snapshot(cache, "Org/gguf-only", {"model.gguf": b"gguf", "config.json": b"{}"}, C2)
    cached = {m.id: m for m in hub.cached_models()}
    assert set(cached) == {REPO, "Org/base-only"}  # the GGUF-only repository is not usable for a run
    assert cached[REPO].chat_template and not cached["Org/base-only"].chat_template
    assert cached[REPO].revision == C1 and cached[REPO].refs == ["main"] and cached[REPO].size > 0
    with pytest.raises(models.ModelError, match="has no '/'"):
        models.register(mdir, "org/x", REPO)


def test_not_an_id_nor_a_folder_names_the_three_forms(tmp_path):
    with pytest.raises(models.ModelError, match=r"not a Hub ID \(ORG/NAME\[@REVISION\]\)"):
        models.locate(tmp_path / "models", "a/b/c")


def test_modelscope_hub_needs_its_client(cache, tmp_path, monkeypatch):
    """TUITUNE_HUB=modelscope: without the (optional) client, the error says what to install; with it (not a
    dependency: checked where someone installed it), nothing cached and no network is the same offline error."""
    import importlib.util

    if importlib.util.find_spec("modelscope") is None:
        with pytest.raises(hub.HubError, match="pip install modelscope"):
            models.locate(tmp_path / "models", REPO, hub="modelscope")
        return
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "modelscope"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hub.OfflineError, match="modelscope download --model TinyOrg/tiny-chat"):
        models.locate(tmp_path / "models", REPO, hub="modelscope")


def test_gated_private_and_missing_revisions_name_the_model_and_hf_token():
    """The Hub's refusals as huggingface_hub raises them (responses built here: no network)."""
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    def response(code):
        return httpx2.Response(code, request=httpx2.Request("GET", "https://huggingface.co/api/models/x"))

    ref = hub.HubRef("meta-llama/Llama-3.2-1B-Instruct", "v9")
    gated = hub._hf_error(ref, GatedRepoError("403 gated", response=response(403)))
    assert isinstance(gated, hub.AccessError)
    assert "meta-llama/Llama-3.2-1B-Instruct is a gated model" in str(gated) and "HF_TOKEN" in str(gated)
    for err in (RepositoryNotFoundError("404", response=response(404)), HfHubHTTPError("401", response=response(401))):
        private = hub._hf_error(ref, err)
        assert isinstance(private, hub.AccessError) and "private" in str(private) and "HF_TOKEN" in str(private)
    missing = hub._hf_error(ref, RevisionNotFoundError("404 rev", response=response(404)))
    assert "has no revision 'v9'" in str(missing)
    down = hub._hf_error(ref, HfHubHTTPError("503 Service Unavailable", response=response(503)))
    assert "503" in str(down) and "try again" in str(down)
