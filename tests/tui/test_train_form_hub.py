"""The training form with a Hub ID as the base model: typed `ORG/NAME`, resolved offline from a real Hugging Face
cache layout (tests/hub_cache.py) holding the embedded model, a 2-step run launched and finished; the cached model
offered in the list; the offline error and the download progress shown on the form."""

from __future__ import annotations

import asyncio
import time

import pytest
from hub_cache import add_snapshot, model_files, use_cache

from tuitune.core.data.samples import Sample
from tuitune.core.data.store import Store
from tuitune.settings import load_settings
from tuitune.tui.app import make_app
from tuitune.tui.screens.train import TrainScreen

REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
MAIN = "c" * 40
# the shortest real run (as tests/e2e/test_hub_models.py): 2 steps, tiny max_length, nothing after training
SHORT = {"max_steps": "2", "max_length": "48", "lora_r": "4", "batch_size": "2", "check_prompts": "0",
         "holdout": "0"}
OFF = ("merge", "bf16", "eval")


def make_project(path):
    with Store.open(path, create=True) as store:
        store.set_task(system_prompt="Answer with one word.")
        store.add_samples([Sample(f"Say the number {i}.", f"{i}", status="accepted") for i in range(6)])
    return path


async def open_form(app, pilot):
    result = {}
    app.push_screen(TrainScreen({"base": app.settings.base_model}), lambda run_id: result.setdefault("id", run_id))
    await pilot.pause()
    return app.screen, result


def fill(screen, base: str) -> None:
    screen.query_one("#base-id").value = base
    for name, value in SHORT.items():
        screen.query_one(f"#opt-{name}").value = value
    for name in OFF:
        screen.query_one(f"#opt-{name}").value = "off"


@pytest.mark.e2e
async def test_the_form_trains_from_a_cached_hub_id_offline(tmp_path, home, monkeypatch, embedded_model):
    from huggingface_hub import scan_cache_dir

    from tuitune.core.training import jobs
    from tuitune.core.training.config import TrainConfig

    cache = tmp_path / "hf" / "hub"
    snapshot = add_snapshot(cache, REPO, model_files(embedded_model), MAIN)
    use_cache(monkeypatch, cache, offline=True)  # the worker inherits HF_HUB_OFFLINE=1
    assert [r.repo_id for r in scan_cache_dir(cache).repos] == [REPO]
    project = make_project(tmp_path / "proj")
    app = make_app(load_settings(project=project, home=home))
    async with app.run_test(size=(100, 40)) as pilot:
        screen, result = await open_form(app, pilot)
        offered = [value for _, value in screen.query_one("#opt-base")._options]
        assert REPO in offered  # the cache's model is in the list too
        fill(screen, REPO)
        assert screen.config().base == REPO
        await pilot.press("ctrl+s")
        deadline = time.monotonic() + 60
        while "id" not in result:
            assert time.monotonic() < deadline, str(screen.query_one("#train-error").render())
            await pilot.pause(0.2)
    d = jobs.run_dir(project, result["id"])
    info = await asyncio.to_thread(jobs.wait, d, timeout=300, poll=1)
    assert info.status == "done", (d / "worker.log").read_text()[-3000:]
    cfg = TrainConfig.load(d / "config.yaml")
    assert (cfg.base, cfg.base_id, cfg.base_revision, cfg.base_path) == (REPO, REPO, MAIN, str(snapshot))
    assert [e["step"] for e in jobs.read_events(d)[0] if e["event"] == "step"] == [1, 2]


async def test_the_form_shows_the_offline_error_and_download_progress(tmp_path, home, monkeypatch):
    (tmp_path / "hf" / "hub").mkdir(parents=True)
    use_cache(monkeypatch, tmp_path / "hf" / "hub", offline=True)
    project = make_project(tmp_path / "proj")
    app = make_app(load_settings(project=project, home=home))
    async with app.run_test(size=(100, 40)) as pilot:
        screen, result = await open_form(app, pilot)
        fill(screen, "Qwen/Qwen2.5-0.5B-Instruct")
        await pilot.press("ctrl+s")
        error = screen.query_one("#train-error")
        deadline = time.monotonic() + 60
        while "not on this machine" not in str(error.render()):
            assert time.monotonic() < deadline, str(error.render())
            await pilot.pause(0.2)
        text = str(error.render())
        assert "Qwen/Qwen2.5-0.5B-Instruct is not on this machine" in text and "tuitune models add" in text
        assert not screen.query_one("#launch").disabled and "id" not in result
        assert not list((project / "runs").glob("*")) if (project / "runs").exists() else True
        # what a download reports on the way (the launch thread calls this through call_from_thread)
        screen._progress("downloading Org/Model: 100.0 MiB of 400.0 MiB", 0.25)
        await pilot.pause()
        bar = screen.query_one("#train-download")
        assert bar.display and bar.progress == 0.25
        assert "downloading Org/Model: 100.0 MiB of 400.0 MiB" in str(error.render())


async def test_the_form_shows_a_real_download_and_then_the_next_problem(tmp_path, home, monkeypatch):
    """A Hub model not in the cache, online (a local stand-in Hub, tests/hub_server.py): the launch downloads it
    through huggingface_hub with the form's progress bar, then reports the project's next problem (no data)."""
    import json

    from hub_server import FakeHub, Repo, point_at

    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    use_cache(monkeypatch, cache, offline=False)
    files = {"config.json": json.dumps({"model_type": "llama"}).encode(), "tokenizer.json": b'{"v": 1}',
             "tokenizer_config.json": b"{}", "model.safetensors": b"w" * 300_000}
    with FakeHub([Repo("Org/fresh", "e" * 40, files)]) as fake:
        point_at(monkeypatch, fake.url)
        project = tmp_path / "proj"
        Store.open(project, create=True).close()  # a project without any sample
        app = make_app(load_settings(project=project, home=home))
        async with app.run_test(size=(100, 40)) as pilot:
            screen, result = await open_form(app, pilot)
            calls = []
            shown = screen._progress
            screen._progress = lambda stage, frac: (calls.append((stage, frac)), shown(stage, frac))
            fill(screen, "Org/fresh")
            await pilot.press("ctrl+s")
            error = screen.query_one("#train-error")
            deadline = time.monotonic() + 60
            while screen.query_one("#launch").disabled:
                assert time.monotonic() < deadline, str(error.render())
                await pilot.pause(0.2)
            assert calls and calls[-1] == ("downloaded Org/fresh: 0.3 MiB", 1.0)
            assert any(stage.startswith("downloading Org/fresh: ") for stage, _ in calls)
            assert "sample" in str(error.render()).lower() or "record" in str(error.render()).lower()
            assert not screen.query_one("#train-download").display and "id" not in result
    assert (cache / "models--Org--fresh" / "snapshots" / ("e" * 40) / "model.safetensors").exists()
