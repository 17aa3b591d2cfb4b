"""Training plans on made-up machines (TUITUNE_HARDWARE): precision, launcher, GPUs, effective batch, refusals.
Nothing here needs a GPU; nothing is created."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tuitune.core import hardware
from tuitune.core.data.formats import read_file
from tuitune.core.resources import Holder, thread_budget
from tuitune.core.training import gpu, jobs
from tuitune.core.training.config import ConfigError, TrainConfig
from tuitune.settings import load_settings


def gpu_(name, total, cap, free=None):
    return {"name": name, "total_gib": total, "free_gib": total - 1 if free is None else free, "capability": cap}


MACHINES = {
    "rtx4090": {"gpus": [gpu_("NVIDIA GeForce RTX 4090", 24, "8.9")], "cpu_cores": 16, "ram_gib": 64},
    "t4": {"gpus": [gpu_("Tesla T4", 15, "7.5")], "cpu_cores": 8, "ram_gib": 32},
    "h200": {"gpus": [gpu_("NVIDIA H200", 139.8, "9.0")], "cpu_cores": 16, "ram_gib": 128},
    "2xa10": {"gpus": [gpu_("NVIDIA A10", 24, "8.6"), gpu_("NVIDIA A10", 24, "8.6")], "cpu_cores": 32},
    "8xh100": {"gpus": [gpu_("NVIDIA H100", 79.6, "9.0", free=70.0 - i) for i in range(8)], "cpu_cores": 96},
    "cpu": {"gpus": [], "cpu_cores": 2, "ram_gib": 24},
}


@pytest.fixture
def on(tmp_path, monkeypatch):
    """on("t4") makes every plan in this process see that machine."""
    def use(key, **over):
        f = tmp_path / f"{key}.json"
        f.write_text(json.dumps({**MACHINES[key], **over}))
        monkeypatch.setenv(hardware.ENV, str(f))
        hardware.detect.cache_clear()
        return f
    yield use
    hardware.detect.cache_clear()


@pytest.fixture
def filled(store, project, real_fixtures):
    samples = read_file(real_fixtures / "llamafactory_alpaca_en_demo.json").samples[:16]
    store.add_samples([s.with_(status="accepted") for s in samples])
    return project


def plan(project, **fields):
    return jobs.dry_run(load_settings(project=project), TrainConfig(**fields))


def test_consumer_card_one_process_bf16(filled, embedded_model, on):
    on("rtx4090")
    p = plan(filled)
    assert p["launcher"][1:3] == ["-m", "tuitune.core.training.worker"]
    assert p["env"] == {"CUDA_VISIBLE_DEVICES": "0", "TUITUNE_HOME": str(load_settings().home)} and p["gpus"] == 1
    c = p["config"]
    assert (c["bf16"], c["fp16"], c["gpus"]) == (True, False, 1)
    assert c["gradient_checkpointing"] is True and c["micro_batch_size"] == c["batch_size"]
    assert p["effective_batch"] == c["batch_size"] * c["grad_accum"]
    assert not (filled / "runs").exists()


def test_the_worker_gets_the_home_the_app_was_started_with(filled, embedded_model, on, tmp_path, monkeypatch):
    """Its own Settings read the environment: a TUI started on another home must not send the worker's probe cache
    and judge settings to the default one."""
    on("cpu")
    monkeypatch.setenv("TUITUNE_HOME", str(tmp_path / "from-env"))
    other = tmp_path / "other-home"
    other.mkdir()
    (other / "models").symlink_to(embedded_model.parent, target_is_directory=True)  # prepared models, shared
    p = jobs.dry_run(load_settings(project=filled, home=other), TrainConfig())
    assert p["env"]["TUITUNE_HOME"] == str(other)


def test_fp16_on_a_bf16_gpu_turns_preset_bf16_off(filled, embedded_model, on):
    on("h200")
    c = plan(filled, fp16=True)["config"]
    assert (c["fp16"], c["bf16"]) == (True, False)
    with pytest.raises(ConfigError, match="fp16 and bf16 are both true"):
        plan(filled, fp16=True, bf16=True)


def test_t4_trains_fp16_mixed_and_refuses_bf16(filled, embedded_model, on):
    on("t4")
    c = plan(filled)["config"]
    assert (c["fp16"], c["bf16"]) == (True, False)
    with pytest.raises(ConfigError, match="Tesla T4 has no bf16"):
        plan(filled, bf16=True)
    assert not (filled / "runs").exists()


@pytest.mark.parametrize("field", ["packing", "padding_free"])
def test_packing_needs_flash_attention(filled, embedded_model, on, field):
    if gpu.importable("flash_attn"):
        pytest.skip("flash-attn is installed here")
    on("h200")
    with pytest.raises(ConfigError, match=f"{field}: true .* flash-attn is not installed"):
        plan(filled, **{field: True})


def test_liger_needs_cuda_and_the_package(filled, embedded_model, on):
    on("cpu")
    with pytest.raises(ConfigError, match="use_liger_kernel: true needs a CUDA GPU"):
        plan(filled, use_liger_kernel=True)
    with pytest.raises(ConfigError, match="liger-kernel is not installed"):
        gpu.check_cuda_options(TrainConfig(use_liger_kernel=True), True, True, liger=False)
    gpu.check_cuda_options(TrainConfig(use_liger_kernel=True, packing=True), True, True, flash_attn=True, liger=True)


def test_multi_gpu_is_a_choice(filled, embedded_model, on):
    on("8xh100")
    one = plan(filled)
    assert one["gpus"] == 1 and "torch.distributed.run" not in one["launcher"]  # 8 GPUs, still one by default
    assert one["env"]["CUDA_VISIBLE_DEVICES"] == "0"  # the one with the most free memory
    two = plan(filled, gpus=2)
    assert two["env"]["CUDA_VISIBLE_DEVICES"] == "0,1"
    every = plan(filled, gpus="all")
    assert every["launcher"][1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=8"]
    c = every["config"]
    assert every["effective_batch"] == c["batch_size"] * 8 * c["grad_accum"]
    assert every["env"]["CUDA_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7"
    assert c["save_steps"] <= one["config"]["save_steps"]  # fewer steps per rank: saves follow the schedule


def test_too_many_gpus_refused(filled, embedded_model, on):
    on("2xa10")
    with pytest.raises(ConfigError, match="gpus: 3 asked for, this machine has 2"):
        plan(filled, gpus=3)
    on("cpu")
    with pytest.raises(ConfigError, match="gpus: 2 needs CUDA GPUs"):
        plan(filled, gpus=2)


def test_cli_dry_run_json_with_gpus_all(filled, embedded_model, on):
    f = on("8xh100")
    env = {**os.environ, hardware.ENV: str(f)}
    out = subprocess.run([sys.executable, "-m", "tuitune.cli", "--project", str(filled), "train", "--dry-run",
                          "--json", "--gpus", "all"], capture_output=True, text=True, env=env, check=False,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    p = json.loads(out.stdout)
    assert "--nproc_per_node=8" in p["launcher"] and p["config"]["gpus"] == "all"
    assert p["effective_batch"] == p["config"]["batch_size"] * 8 * p["config"]["grad_accum"]
    assert not (filled / "runs").exists()


def test_precision_full_and_preference_keep_fp32_masters():
    full = TrainConfig(method="full", bf16=True)
    assert gpu.load_dtype(full, True) == "float32" and gpu.precision(full, True) == "bf16 mixed, fp32 master weights"
    dpo = TrainConfig(method="dpo", adapter="none", bf16=True)
    assert gpu.load_dtype(dpo, True) == "float32"
    lora = TrainConfig(method="lora", bf16=True)
    assert gpu.load_dtype(lora, True) == "bfloat16" and gpu.precision(lora, True) == "bf16 mixed, bf16 frozen base"
    assert gpu.load_dtype(TrainConfig(method="qlora", fp16=True), True) == "float16"
    assert gpu.load_dtype(lora, False) == "float32"


def test_full_finetune_of_8b_refused_on_a_24gb_card_naming_what_holds_memory():
    m = hardware.from_dict(MACHINES["rtx4090"])
    cfg = TrainConfig(method="full", batch_size=4, micro_batch_size=1, max_length=1024)
    need = gpu.need_gib(cfg, 8_030_000_000, 128256)
    assert need > 119  # 16 bytes per parameter
    held = [Holder("server", "chat", 4321, (0,), 6.5)]
    with pytest.raises(ConfigError, match=r"GPU 0 \(NVIDIA GeForce RTX 4090\) has 23.0 of 24 GiB free; held by this "
                                          r"app: vLLM server chat holding 6.5 GiB on GPU 0, pid 4321"):
        gpu.choose_gpus(m, 1, need, held)
    lora = TrainConfig(method="qlora", batch_size=4, micro_batch_size=1, max_length=1024)
    assert gpu.choose_gpus(m, 1, gpu.need_gib(lora, 8_030_000_000, 128256), held) == (0,)


def test_cpu_thread_budget_beside_running_work():
    m = hardware.from_dict(MACHINES["cpu"])
    alone = thread_budget(m, [])
    assert alone.alone and alone.env_training() == {}  # torch's default, as measured
    beside = thread_budget(m, [Holder("server", "teacher", 1, cores=(1,))])
    assert beside.threads == 1 and beside.env_training() == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    assert beside.cores == (0,)  # not the core the server is bound to
    crowded = thread_budget(m, [Holder("training", "a", 1), Holder("training", "b", 2)])
    assert crowded.threads == 1 and "3" not in crowded.note and "2 CPU-heavy" in crowded.note
    big = thread_budget(hardware.from_dict({"gpus": [], "cpu_cores": 32}), [Holder("server", "t", 1)])
    assert big.threads == 16


def test_gpu_holders_do_not_take_cpu_share():
    m = hardware.from_dict(MACHINES["h200"])
    assert thread_budget(m, [Holder("server", "s", 1, (0,), 20.0)]).threads == 16


STOP_SCRIPT = r"""
import os, sys, torch.distributed as dist
sys.path.insert(0, {root!r})
from tuitune.core.training.worker import agreed_stop
dist.init_process_group("gloo")
rank = dist.get_rank()
result = f"{{agreed_stop(rank == 1)}} {{agreed_stop(False)}}"
with open(os.path.join({out!r}, f"rank{{rank}}"), "w") as f:  # one file each: printed lines interleave
    f.write(result)
dist.destroy_process_group()
"""


def test_stop_request_reaches_every_rank(tmp_path):
    """Two real CPU ranks (gloo): a stop asked of rank 1 only is seen by both at the same step."""
    script = tmp_path / "stop.py"
    script.write_text(STOP_SCRIPT.format(root=os.getcwd(), out=str(tmp_path)))
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(script)], capture_output=True, text=True, timeout=180, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert [(tmp_path / f"rank{r}").read_text() for r in (0, 1)] == ["True False", "True False"]
