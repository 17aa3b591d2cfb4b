"""Job control without training: bad input refused before anything is created, stale runs detected,
a worker that fails writes a `failed` event, OOM errors are recognised."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from tuitune.core.data.formats import read_file
from tuitune.core.models import ModelError  # noqa: F401 - resolve() errors are wrapped in ConfigError
from tuitune.core.training import jobs
from tuitune.core.training.config import ConfigError, TrainConfig
from tuitune.core.training.data import DataError
from tuitune.core.training.events import EventWriter
from tuitune.settings import load_settings


@pytest.fixture
def filled(store, project, real_fixtures):
    samples = read_file(real_fixtures / "llamafactory_alpaca_en_demo.json").samples[:6]
    store.add_samples([s.with_(status="accepted") for s in samples])
    return project


def _nothing_created(project):
    return not (project / "runs").exists() or not any((project / "runs").iterdir())


@pytest.mark.parametrize("cfg, error, match", [
    (TrainConfig(base="/no/such/model/folder"), ConfigError, "no such folder"),
    (TrainConfig(max_length=16), DataError, "longer than max_length=16"),
    (TrainConfig(fp16=True), ConfigError, "fp16: true needs a CUDA GPU"),
    (TrainConfig(device="cuda"), ConfigError, "no CUDA GPU"),
    (TrainConfig(batch_size=4, micro_batch_size=3), ConfigError, "must divide batch_size 4"),
    (TrainConfig(method="dpo"), DataError, "preference pairs"),
    (TrainConfig(method="pretrain"), ConfigError, "text_files"),
])
def test_bad_input_fails_before_anything_is_created(filled, embedded_model, cfg, error, match):
    with pytest.raises(error, match=match):
        jobs.launch(load_settings(project=filled), cfg)
    assert _nothing_created(filled)


def test_empty_and_too_small_datasets(project, store, real_fixtures, embedded_model):
    with pytest.raises(DataError, match="Only 0 training records"):
        jobs.launch(load_settings(project=project), TrainConfig())
    store.add_samples([s.with_(status="accepted") for s in
                       read_file(real_fixtures / "llamafactory_alpaca_en_demo.json").samples[:2]])
    with pytest.raises(DataError, match="Only 2 training records"):
        jobs.launch(load_settings(project=project), TrainConfig())
    assert _nothing_created(project)
    with pytest.raises(DataError, match="tuitune init"):
        jobs.launch(load_settings(project=project / "not-a-project"), TrainConfig())


def test_cli_train_bad_input_exit_2_and_no_run(filled, embedded_model):
    from tuitune.cli import main

    res = CliRunner().invoke(main, ["--project", str(filled), "train", "--set", "max_length=16"])
    assert res.exit_code == 2 and "longer than max_length=16" in res.output
    res = CliRunner().invoke(main, ["--project", str(filled), "runs", "--json"])
    assert res.exit_code == 0 and json.loads(res.output) == []
    res = CliRunner().invoke(main, ["--project", str(filled), "runs", "stop", "nope"])
    assert res.exit_code == 2 and "No run 'nope'" in res.output


def _fake_run(project, run_id, pid):
    d = project / "runs" / run_id
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(TrainConfig(max_steps=4).to_yaml())
    (d / "worker.pid").write_text(f"{pid}\n")
    EventWriter(d).emit("started", pid=pid)
    EventWriter(d).emit("step", step=2, max_steps=4, loss=1.5)
    return d


def test_stale_run_is_interrupted(project):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _fake_run(project, "r-dead", dead.pid)
    _fake_run(project, "r-recycled", os.getpid())  # alive, but not a worker for this run: pid reuse
    infos = {r.id: r for r in jobs.list_runs(project)}
    assert infos["r-dead"].status == "interrupted" and "resumed" in infos["r-dead"].error
    assert infos["r-recycled"].status == "interrupted"
    assert (infos["r-dead"].step, infos["r-dead"].max_steps, infos["r-dead"].loss) == (2, 4, 1.5)


def test_worker_failure_writes_failed_event(filled, embedded_model):
    cfg = TrainConfig(max_steps=1, lora_r=4, merge=False)
    run_id = jobs.launch(load_settings(project=filled), cfg)
    d = filled / "runs" / run_id
    # Make the worker fail for real while it starts: its data file disappears under it.
    (d / "data.jsonl").unlink()
    info = jobs.wait(d, timeout=180)
    assert info.status == "failed", (d / "worker.log").read_text()[-2000:]
    assert "data.jsonl does not exist" in info.error
    failed = next(e for e in jobs.read_events(d)[0] if e["event"] == "failed")
    assert failed["kind"] == "error" and "worker.log" in failed["hint"]


def test_oom_is_recognised_with_advice():
    import torch

    from tuitune.core.training.worker import OOM_HINT, is_oom

    assert is_oom(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_oom(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"))
    assert is_oom(MemoryError())
    assert not is_oom(ValueError("bad value"))
    assert "micro_batch_size" in OOM_HINT and "qlora" in OOM_HINT


def test_detached_worker_is_in_its_own_session(filled, embedded_model):
    run_id = jobs.launch(load_settings(project=filled), TrainConfig(max_steps=1, lora_r=4, merge=False))
    d = filled / "runs" / run_id
    pid = int((d / "worker.pid").read_text())
    try:
        assert os.getsid(pid) == pid != os.getsid(0)
        assert jobs.run_info(d).status == "running"
    finally:
        os.kill(pid, 9)
        for _ in range(50):
            if not jobs.worker_alive(d):
                break
            time.sleep(0.1)
    assert jobs.run_info(d).status == "interrupted"


def test_worker_command_uses_torchrun_only_with_several_gpus(tmp_path):
    one = jobs.worker_command(tmp_path, 0)
    assert one == [sys.executable, "-m", "tuitune.core.training.worker", str(tmp_path.resolve())]
    assert jobs.worker_command(tmp_path, 1) == one
    many = jobs.worker_command(tmp_path, 4)
    assert many[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    assert many[-3:] == one[-3:]


def test_bf16_on_a_cpu_that_would_emulate_it_is_refused(filled, embedded_model, monkeypatch):
    from tuitune.core.training import presets

    monkeypatch.setattr(presets, "cpu_has_native_bf16", lambda cpuinfo=None: False)  # e.g. AVX2-only laptop
    with pytest.raises(ConfigError, match="native bf16"):
        jobs.launch(load_settings(project=filled), TrainConfig(bf16=True))
    assert _nothing_created(filled)
    cfg, _ = jobs.prepare(load_settings(project=filled), TrainConfig())
    assert cfg.bf16 is False  # the preset stays in fp32 there


def test_resume_without_a_checkpoint_asks_for_a_restart_from_scratch(project, embedded_model):
    from tuitune.cli import main

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    d = _fake_run(project, "r-nockpt", dead.pid)  # interrupted at step 2; its checkpoints were deleted
    (d / "config.yaml").write_text(TrainConfig(max_steps=4, base_path=str(embedded_model)).to_yaml())
    with pytest.raises(jobs.NoCheckpoint, match="checkpoints were deleted"):
        jobs.resume(project, "r-nockpt")
    res = CliRunner().invoke(main, ["--project", str(project), "train", "--resume", "r-nockpt"])
    assert res.exit_code == 2 and "--from-scratch" in res.output
    assert not (d / "worker.log").exists()  # nothing was started


@pytest.mark.parametrize("setting", ["batch_size=0", "micro_batch_size=0", "lora_r=[1,2", "lora_r=0",
                                     "learning_rate=-1", "warmup_ratio=5", "epochs=-1", "lora_dropout=2",
                                     "save_steps=0", "num_threads=-3", "lr_scheduler=nonsense", "grad_accum=0",
                                     "beta=-1", "holdout=100"])
def test_cli_refuses_bad_settings_before_any_run_folder(filled, embedded_model, setting):
    from tuitune.cli import main

    res = CliRunner().invoke(main, ["--project", str(filled), "train", "--set", setting])
    assert res.exit_code == 2, res.output
    assert setting.split("=")[0] in res.output and "Traceback" not in res.output
    assert not (filled / "runs").exists() or not any((filled / "runs").iterdir())
