"""The serving planner on made-up machines: exact vLLM command lines, environment and refusals (no GPU needed).

Models are folders holding only a config.json (real models' configs), which plan exactly as the real models."""

from __future__ import annotations

import json
import os
import string
import subprocess
import sys
from pathlib import Path

import pytest

from tuitune.core import hardware
from tuitune.core.resources import Holder
from tuitune.core.serving import preflight
from tuitune.core.serving.errors import VLLMUnavailable
from tuitune.core.serving.gpu_plan import GPUPlanError
from tuitune.core.serving.plan import ModelSpec, dry_run, plan
from tuitune.settings import load_settings

SMOL = {"hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
        "head_dim": 64, "intermediate_size": 1536, "vocab_size": 49152, "max_position_embeddings": 8192,
        "dtype": "bfloat16", "tie_word_embeddings": True}
LLAMA3_8B = {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
             "intermediate_size": 14336, "vocab_size": 128256, "max_position_embeddings": 8192,
             "torch_dtype": "bfloat16"}
LLAMA3_70B = {"hidden_size": 8192, "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8,
              "intermediate_size": 28672, "vocab_size": 128256, "max_position_embeddings": 8192,
              "torch_dtype": "bfloat16"}


def gpu(name, total, free=None, cap="8.9"):
    return {"name": name, "total_gib": total, "free_gib": total - 0.5 if free is None else free, "capability": cap}


MACHINES = {
    "rtx4090": {"gpus": [gpu("NVIDIA GeForce RTX 4090", 24)], "cpu_cores": 16, "ram_gib": 64},
    "t4": {"gpus": [gpu("Tesla T4", 15, cap="7.5")], "cpu_cores": 8, "ram_gib": 32},
    "h200": {"gpus": [gpu("NVIDIA H200", 139.8, cap="9.0")], "cpu_cores": 16, "ram_gib": 128},
    "2xa10": {"gpus": [gpu("NVIDIA A10", 24, cap="8.6")] * 2, "cpu_cores": 32, "ram_gib": 128},
    "8xh100": {"gpus": [gpu("NVIDIA H100 80GB HBM3", 79.6, cap="9.0")] * 8, "cpu_cores": 96, "ram_gib": 1024},
    "cpu": {"gpus": [], "cpu_cores": 2, "ram_gib": 24},
}


def machine(key, **changes):
    d = json.loads(json.dumps(MACHINES[key]))
    for i, free in changes.get("free", {}).items():
        d["gpus"][i]["free_gib"] = free
    return hardware.from_dict(d, key)


@pytest.fixture()
def models(tmp_path):
    out = {}
    for name, cfg in (("smol", SMOL), ("llama8b", LLAMA3_8B), ("llama70b", LLAMA3_70B)):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps(cfg))
        out[name] = d
    return out


@pytest.fixture()
def settings(tmp_path):
    return load_settings(home=tmp_path / "home", project=tmp_path)


def run_plan(settings, tmp_path, specs, m, holders=()):
    return plan(specs, tmp_path / "logs", settings, available_gib=10_000, machine=m, holders=list(holders))


def flag(cmd, name):
    return cmd[cmd.index(name) + 1] if name in cmd else None


def test_small_model_on_a_consumer_card_takes_a_small_share(settings, tmp_path, models):
    (srv,) = run_plan(settings, tmp_path, [ModelSpec("smol", models["smol"])], machine("rtx4090")).servers
    cmd = srv.command()
    assert "--enforce-eager" not in cmd  # CUDA graphs kept on GPU
    assert flag(cmd, "--max-model-len") == "8192"
    util = float(flag(cmd, "--gpu-memory-utilization"))
    assert 0.05 <= util <= 0.2, util  # not vLLM's 0.92: the rest stays for training and other servers
    assert "--tensor-parallel-size" not in cmd
    env = srv.env(base={})
    assert env["CUDA_VISIBLE_DEVICES"] == "0" and "VLLM_CPU_KVCACHE_SPACE" not in env


def test_teacher_and_chat_share_one_gpu_within_its_free_memory(settings, tmp_path, models):
    m = machine("rtx4090")
    servers = run_plan(settings, tmp_path, [ModelSpec("teacher", models["llama8b"]), ModelSpec("chat", models["smol"])],
                       m).servers
    utils = [float(flag(s.command(), "--gpu-memory-utilization")) for s in servers]
    assert sum(utils) * 24 <= m.gpus[0].free_gib  # both start: together they claim no more than is free
    big = servers[0].command()
    assert int(flag(big, "--max-model-len")) >= 2048
    assert utils[0] > utils[1]


def test_two_different_8b_folders_refused_with_need_and_free(settings, tmp_path, models):
    other = tmp_path / "llama8b-ft"
    other.mkdir()
    (other / "config.json").write_text(json.dumps(LLAMA3_8B))
    with pytest.raises(GPUPlanError) as e:
        run_plan(settings, tmp_path, [ModelSpec("base", models["llama8b"]), ModelSpec("ft", other)],
                 machine("rtx4090"))
    msg = str(e.value)
    assert "needs about" in msg and "GPU 0 (NVIDIA GeForce RTX 4090)" in msg and "free" in msg
    assert "TUITUNE_VLLM_KV_CACHE_GIB" not in msg
    assert isinstance(e.value, VLLMUnavailable)


def test_8b_does_not_fit_a_t4(settings, tmp_path, models):
    with pytest.raises(GPUPlanError, match=r"llama needs about 1[67]\.\d GiB"):
        run_plan(settings, tmp_path, [ModelSpec("llama", models["llama8b"])], machine("t4"))


def test_two_a10s_put_two_8b_servers_on_separate_gpus(settings, tmp_path, models):
    other = tmp_path / "llama8b-ft"
    other.mkdir()
    (other / "config.json").write_text(json.dumps(LLAMA3_8B))
    a, b = run_plan(settings, tmp_path, [ModelSpec("base", models["llama8b"]), ModelSpec("ft", other)],
                    machine("2xa10")).servers
    assert {a.env(base={})["CUDA_VISIBLE_DEVICES"], b.env(base={})["CUDA_VISIBLE_DEVICES"]} == {"0", "1"}


def test_70b_is_split_over_two_h100s(settings, tmp_path, models):
    (srv,) = run_plan(settings, tmp_path, [ModelSpec("llama70b", models["llama70b"])], machine("8xh100")).servers
    cmd = srv.command()
    assert flag(cmd, "--tensor-parallel-size") == "2"
    assert srv.env(base={})["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert flag(cmd, "--max-model-len") == "8192"
    assert 0.85 <= float(flag(cmd, "--gpu-memory-utilization")) <= 0.97


def test_70b_needs_four_busy_h100s_when_they_are_half_full(settings, tmp_path, models):
    m = machine("8xh100", free={i: 40.0 for i in range(8)})
    (srv,) = run_plan(settings, tmp_path, [ModelSpec("llama70b", models["llama70b"])], m).servers
    assert flag(srv.command(), "--tensor-parallel-size") == "4"
    assert float(flag(srv.command(), "--gpu-memory-utilization")) * 79.6 <= 40.0


def test_h200_serves_8b_beside_a_running_training_run(settings, tmp_path, models):
    held = [Holder("training", "20260101-lora-ab12", 4242, (0,), 100.0)]
    m = machine("h200", free={0: 39.3})
    (srv,) = run_plan(settings, tmp_path, [ModelSpec("llama8b", models["llama8b"])], m, held).servers
    assert float(flag(srv.command(), "--gpu-memory-utilization")) * 139.8 <= 39.3


def test_refusal_names_what_holds_the_memory(settings, tmp_path, models):
    held = [Holder("server", "teacher", 777, (0,), 120.0), Holder("training", "run-x", 888, (0,), 15.0)]
    m = machine("h200", free={0: 4.0})
    with pytest.raises(GPUPlanError) as e:
        run_plan(settings, tmp_path, [ModelSpec("llama8b", models["llama8b"])], m, held)
    msg = str(e.value)
    assert "vLLM server teacher holding 120.0 GiB on GPU 0, pid 777" in msg
    assert "training run run-x holding 15.0 GiB" in msg and "tuitune runs stop" in msg


def test_reclaimed_server_memory_counts_as_free(settings, tmp_path, models):
    m = machine("rtx4090", free={0: 3.0})
    spec = [ModelSpec("chat", models["llama8b"])]
    with pytest.raises(GPUPlanError):
        plan(spec, tmp_path, settings, available_gib=999, machine=m, holders=[])
    group = plan(spec, tmp_path, settings, available_gib=999, machine=m, holders=[],
                 reclaimable_gpu={"chat": ((0,), 18.0)})  # the pool restarts its own chat server
    assert group.servers[0].gpu_share.gpus == (0,)


def test_cpu_keeps_enforce_eager_and_binds_threads_beside_running_work(settings, tmp_path, models):
    m = machine("cpu")
    (alone,) = run_plan(settings, tmp_path, [ModelSpec("smol", models["smol"])], m).servers
    cmd = alone.command()
    assert "--enforce-eager" in cmd and "--gpu-memory-utilization" not in cmd
    env = alone.env(base={})
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "2" and "VLLM_CPU_OMP_THREADS_BIND" not in env  # vLLM's own default
    (beside,) = run_plan(settings, tmp_path, [ModelSpec("smol", models["smol"])], m,
                         [Holder("training", "run-1", 11)]).servers
    env = beside.env(base={})
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "1" and env["OMP_NUM_THREADS"] == "1"
    assert "CUDA_VISIBLE_DEVICES" not in env


def test_explicit_enforce_eager_is_kept_on_gpu(tmp_path, models):
    s = load_settings(home=tmp_path / "home", project=tmp_path, vllm_enforce_eager=True)
    (srv,) = run_plan(s, tmp_path, [ModelSpec("smol", models["smol"])], machine("h200")).servers
    assert "--enforce-eager" in srv.command()


@pytest.mark.parametrize("log, expect", [
    (("ValueError: Free memory on device cuda:0 (3.1/23.6 GiB) on startup is less than desired GPU memory "
     "utilization (0.9, 21.2 GiB)."), "Another program took GPU memory"),
    ("ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization`",
     "nothing for the KV cache"),
    (("ValueError: To serve at least one request with the model's max seq len (131072), (16.0 GiB KV cache is "
     "needed, which is larger than the available KV cache memory"), "context length does not fit"),
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "GPU ran out of memory"),
])
def test_vllm_gpu_messages_explained_without_cpu_advice(log, expect):
    advice = preflight.diagnose(log, gpu=True)
    assert expect in advice and "TUITUNE_VLLM_KV_CACHE_GIB" not in advice
    assert preflight.out_of_memory(log)  # a reason vLLM cannot run: chat may fall back


def test_cpu_oom_advice_unchanged():
    assert "TUITUNE_VLLM_KV_CACHE_GIB" in preflight.diagnose("RuntimeError: cannot allocate memory")


def test_dry_run_redacts_key_and_starts_nothing(settings, tmp_path, models):
    out = dry_run([ModelSpec("smol", models["smol"])], tmp_path / "logs", settings, machine=machine("2xa10"),
                  holders=[])
    (srv,) = out["servers"]
    assert srv["models"] == ["smol"] and srv["env"]["VLLM_API_KEY"] == "<redacted>"
    assert srv["command"][1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    # the key (32 hex digits) is in the environment only, never on the command line (a 32-char path is fine)
    assert not any("VLLM_API_KEY" in a or (len(a) == 32 and all(c in string.hexdigits for c in a))
                   for a in srv["command"])
    assert not (tmp_path / "logs").exists()


def _cli(tmp_path, hw: dict, *args):
    f = tmp_path / "hw.json"
    f.write_text(json.dumps(hw))
    env = {**os.environ, "TUITUNE_HARDWARE": str(f), "TUITUNE_PROJECT": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "tuitune.cli", "serve", *args], check=False, capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)


def test_cli_dry_run_json_and_refusal(tmp_path, models):
    ok = _cli(tmp_path, MACHINES["8xh100"], str(models["llama70b"]), "--dry-run", "--json")
    assert ok.returncode == 0, ok.stderr
    (srv,) = json.loads(ok.stdout)["servers"]
    assert flag(srv["command"], "--tensor-parallel-size") == "2" and srv["env"]["CUDA_VISIBLE_DEVICES"] == "0,1"
    bad = _cli(tmp_path, MACHINES["t4"], str(models["llama70b"]), "--dry-run", "--json")
    assert bad.returncode == 2 and "needs about" in bad.stderr and "Tesla T4" in bad.stderr
    assert bad.stdout == ""
    assert not Path(tmp_path / "logs").exists()
