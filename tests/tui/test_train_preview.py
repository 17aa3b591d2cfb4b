"""The training form previews what the run will use, resolved by the same core function as
`tuitune train --dry-run --json` (jobs.dry_run), live as fields change, with the error of a bad value; a Hub ID that
is not cached is never downloaded by the preview. No training, no vLLM."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest
from click.testing import CliRunner
from rich.console import Console

from tuitune.cli import main
from tuitune.core.data.samples import Sample
from tuitune.core.data.store import Store
from tuitune.core.training import jobs
from tuitune.settings import load_settings
from tuitune.tui.app import make_app
from tuitune.tui.screens.train import TrainScreen, preview_rows


def make_project(path, n: int = 20):
    with Store.open(path, create=True) as store:
        store.set_task(system_prompt="Answer with one word.")
        store.add_samples([Sample(f"Say the number {i}.", f"{i}", status="accepted") for i in range(n)])
    return path


async def settled(pilot, screen: TrainScreen, timeout: float = 60) -> str:
    await pilot.pause()  # the Changed messages of values just set are handled first
    deadline = time.monotonic() + timeout
    while screen.preview_state == "pending":
        assert time.monotonic() < deadline, "the preview never settled"
        await asyncio.sleep(0.1)  # not pilot.pause: its refresh round-trips starve the resolving thread
    await pilot.pause()
    return screen.preview_state


def preview_text(screen: TrainScreen) -> str:
    console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115 (closed below)
    console.print(screen.query_one("#train-preview-text").content)
    console.file.close()
    return console.export_text()


def cli_plan(project, *args: str) -> dict:
    out = CliRunner().invoke(main, ["--project", str(project), "train", "--dry-run", "--json", *args])
    assert out.exit_code == 0, out.output
    return json.loads(out.output)


def same_plan(screen: TrainScreen, cli: dict) -> None:
    """The preview holds what the CLI's dry run prints for the same choices, and shows it."""
    plan = screen.preview_plan
    assert plan is not None, screen.preview_error
    assert plan["config"] == cli["config"]
    for key in ("records", "train_records", "steps", "effective_batch", "gpus", "device", "reasons"):
        assert plan[key] == cli[key], key
    shown = preview_text(screen)
    for label, value, why in preview_rows(cli, screen._set_here()):
        if label == "runs on":  # its thread count follows what else runs on the machine at that moment
            value = "GPU" if cli["device"] == "cuda" else "CPU"
        row = rf"^{re.escape(label)}  +{re.escape(value)}.*  {re.escape(why)}" if why else \
            rf"^{re.escape(label)}  +{re.escape(value)}"
        assert re.search(row, shown, re.MULTILINE), (label, value, why, shown)


@pytest.fixture
def env(tmp_path, home, monkeypatch, embedded_model):
    monkeypatch.setenv("TUITUNE_HOME", str(home))  # the CLI in this process sees the app's home
    monkeypatch.delenv("TUITUNE_BASE_MODEL", raising=False)
    return make_project(tmp_path / "proj"), home


async def test_the_preview_follows_the_form_and_matches_the_dry_run(env, monkeypatch):
    project, home = env
    resolutions = []
    real = jobs.dry_run
    monkeypatch.setattr(jobs, "dry_run", lambda s, cfg: (resolutions.append(cfg), real(s, cfg))[1])
    app = make_app(load_settings(project=project, home=home))
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("f3")  # the form as /train opens it: the app's base model, the verdict on
        screen = app.screen
        assert isinstance(screen, TrainScreen)
        assert await settled(pilot, screen) == "ready", screen.preview_error
        same_plan(screen, cli_plan(project, "--eval"))
        reasons = screen.preview_plan["reasons"]
        assert {"learning_rate", "epochs", "batch_size", "max_length", "lora_r", "holdout", "bf16"} <= set(reasons)
        assert "The run will use:" in preview_text(screen)

        # typing a learning rate: one resolution after the last key, and the preview follows
        lr = screen.query_one("#opt-learning_rate")
        lr.focus()
        before = len(resolutions)
        for key in ("0", "full_stop", "0", "0", "3"):
            await pilot.press(key)
        assert screen.preview_state == "pending"
        assert await settled(pilot, screen) == "ready"
        assert len(resolutions) == before + 1  # debounced: not one resolution per key
        assert screen.preview_plan["config"]["learning_rate"] == 0.003
        assert "learning_rate" not in screen.preview_plan["reasons"]
        rows = {label: why for label, _, why in preview_rows(screen.preview_plan, screen._set_here())}
        assert rows["learning rate"] == "set in the form" and "set in the form" in preview_text(screen)
        same_plan(screen, cli_plan(project, "--eval", "--learning-rate", "0.003"))

        # another method: full fine-tuning takes its own rate and trains no adapter
        lr.value = ""
        screen.query_one("#opt-method").value = "full"
        assert await settled(pilot, screen) == "ready"
        assert screen.preview_plan["config"]["learning_rate"] != 0.003
        assert "all weights (no adapter)" in preview_text(screen)
        same_plan(screen, cli_plan(project, "--eval", "--method", "full"))

        # a value that is not a number: its error in the preview, at once, without resolving
        before = len(resolutions)
        lr.value = "fast"
        assert await settled(pilot, screen) == "error"
        assert "learning_rate: 'fast' is not a number" in screen.preview_error
        assert "learning_rate: 'fast' is not a number" in preview_text(screen)
        assert len(resolutions) == before and screen.preview_plan is None

        # a value only the resolution can refuse: a micro batch that does not divide the batch
        lr.value = ""
        screen.query_one("#opt-batch_size").value = "4"
        screen.query_one("#opt-micro_batch_size").value = "3"
        assert await settled(pilot, screen) == "error"
        assert "micro_batch_size 3 must divide batch_size 4" in preview_text(screen)
        cli = CliRunner().invoke(main, ["--project", str(project), "train", "--dry-run", "--eval", "--method", "full",
                                        "--batch-size", "4", "--micro-batch-size", "3"])
        assert cli.exit_code == 2 and screen.preview_error in cli.output  # the same message as the CLI's

        screen.query_one("#opt-micro_batch_size").value = ""
        assert await settled(pilot, screen) == "ready"  # fixed: the values again
        assert screen.preview_plan["config"]["batch_size"] == 4
    assert not (project / "runs").exists()  # previewing creates nothing


async def test_a_hub_id_not_in_the_cache_is_not_downloaded_by_the_preview(env, tmp_path, monkeypatch):
    from hub_cache import tiny_model, use_cache
    from hub_server import FakeHub, Repo, point_at

    project, home = env
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    use_cache(monkeypatch, cache, offline=False)  # online: a download would work, and must not happen
    with FakeHub([Repo("Org/fresh", "e" * 40, tiny_model())]) as hub:
        point_at(monkeypatch, hub.url)
        app = make_app(load_settings(project=project, home=home))
        async with app.run_test(size=(100, 40)) as pilot:
            screen = TrainScreen({"base": app.settings.base_model})
            await app.push_screen(screen)
            screen.query_one("#base-id").value = "Org/fresh"
            assert await settled(pilot, screen) == "error"
            assert "Org/fresh" in screen.preview_error
            assert "Org/fresh" in preview_text(screen)
        assert hub.file_gets() == []
    assert not list(cache.glob("models--Org--fresh/snapshots/*/*"))


@pytest.mark.parametrize("cfg", [{}, {"method": "full"}, {"method": "dpo", "lora_r": 8}, {"learning_rate": 0.01,
                                                                                       "batch_size": 2}])
@pytest.mark.parametrize("cuda", [False, True])
def test_every_value_the_presets_fill_has_a_reason_and_only_those(cfg, cuda):
    from tuitune.core.training import presets
    from tuitune.core.training.config import TrainConfig

    asked = TrainConfig(**cfg)
    reasons: dict[str, str] = {}
    out = presets.apply(asked, [40, 300, 90] * 15, presets.Hardware(cuda=cuda, gpus=int(cuda), bf16=cuda),
                        model_params=135_000_000, reasons=reasons)
    filled = {f for f in TrainConfig.model_fields if getattr(asked, f) is None and getattr(out, f) is not None}
    assert set(reasons) == filled  # parity, num_threads... stay unset: the worker decides those
    assert all(reasons.values())
    assert out == presets.apply(asked, [40, 300, 90] * 15, presets.Hardware(cuda=cuda, gpus=int(cuda), bf16=cuda),
                                model_params=135_000_000)  # asking why changes nothing


async def test_an_unforeseen_failure_of_the_preview_is_shown_and_the_form_stays(env, monkeypatch):
    project, home = env

    def broken(settings, cfg):  # a fault injected where the resolution reads files
        raise PermissionError(13, "Permission denied", str(project / "tuitune.db"))

    monkeypatch.setattr(jobs, "dry_run", broken)
    app = make_app(load_settings(project=project, home=home))
    async with app.run_test(size=(100, 40)) as pilot:
        screen = TrainScreen({"base": app.settings.base_model})
        await app.push_screen(screen)
        assert await settled(pilot, screen) == "error"
        assert "could not resolve the settings" in screen.preview_error and "Permission denied" in preview_text(screen)
        assert app.screen is screen and app.is_running
