"""Serving faults that need no running vLLM: missing chat template, taken port, memory budget, the plan for
several models, and the guard that ends the server's process group when its parent is killed with -9."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
from procs import group_members

from tuitune.core.serving import plan as serving_plan
from tuitune.core.serving import vllm as serving
from tuitune.core.serving.plan import ModelSpec
from tuitune.core.serving.vllm import ServingError, VLLMServer
from tuitune.settings import Settings


def _copy_model(src, dst, *, template: bool):
    dst.mkdir()
    for f in src.iterdir():
        if f.suffix == ".safetensors":
            os.symlink(f, dst / f.name)
        elif f.name != "chat_template.jinja" or template:
            shutil.copy(f, dst / f.name)
    if not template:
        cfg = json.loads((dst / "tokenizer_config.json").read_text())
        cfg.pop("chat_template", None)
        (dst / "tokenizer_config.json").write_text(json.dumps(cfg))
    return dst


def test_model_without_chat_template_is_a_clear_error_before_starting(embedded_model, tmp_path):
    bare = _copy_model(embedded_model, tmp_path / "bare", template=False)
    server = VLLMServer(bare, name="bare", log_path=tmp_path / "log.txt")
    with pytest.raises(serving.ChatTemplateMissing, match="no chat template") as e:
        server.start(timeout=5)
    assert "instruct" in str(e.value)  # says what to do
    assert server.pid is None and not (tmp_path / "log.txt").exists()  # nothing was started
    assert serving.has_chat_template(embedded_model)


def test_taken_port_is_replaced_by_a_free_one():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        assert not serving.port_is_free(taken)
        other = serving.free_port(taken)
        assert other != taken and serving.port_is_free(other)
    assert serving.free_port(other) == other  # a free preferred port is kept


def test_too_little_memory_says_why_and_offers_the_fallback(embedded_model, tmp_path):
    huge = Settings(vllm_kv_cache_gib=100_000)
    server = VLLMServer(embedded_model, log_path=tmp_path / "log.txt", settings=huge)
    with pytest.raises(serving.VLLMUnavailable, match="memory") as e:
        server.start(timeout=5)
    assert "transformers" in str(e.value) and server.pid is None


def _adapter(tmp_path, name, r=8, dora=False):
    d = tmp_path / name
    d.mkdir()
    (d / "adapter_config.json").write_text(json.dumps({"r": r, "use_dora": dora, "peft_type": "LORA"}))
    (d / "adapter_model.safetensors").write_bytes(b"\0" * 1024)
    return d


def test_plan_puts_adapters_on_their_base_and_full_models_on_their_own(embedded_model, tmp_path):
    a1, a2 = _adapter(tmp_path, "a1", r=8), _adapter(tmp_path, "a2", r=24)
    merged = _copy_model(embedded_model, tmp_path / "merged", template=True)
    specs = [ModelSpec("base", embedded_model), ModelSpec("run1", a1, base=embedded_model),
             ModelSpec("run2", a2, base=embedded_model), ModelSpec("run3", merged)]
    group = serving_plan.plan(specs, tmp_path / "logs", Settings(), available_gib=100)
    assert [s.model_names for s in group.servers] == [["base", "run1", "run2"], ["run3"]]
    cmd = group.servers[0].command()
    assert "--enable-lora" in cmd and cmd[cmd.index("--max-lora-rank") + 1] == "32"  # 24 rounds up
    assert cmd[cmd.index("--lora-modules") + 1:cmd.index("--lora-modules") + 3] == [f"run1={a1}", f"run2={a2}"]
    assert group.endpoint("run2").base_url == group.servers[0].base_url
    with pytest.raises(ServingError, match="adapters"):
        serving_plan.plan(specs, tmp_path / "logs", Settings(), available_gib=4)


def test_dora_adapter_is_refused_with_the_way_out(tmp_path):
    with pytest.raises(ServingError, match="merged"):
        serving.lora_rank(_adapter(tmp_path, "d", dora=True))


PARENT = r"""
import subprocess, sys, time
guard = subprocess.Popen([sys.executable, "-m", "tuitune.core.serving.vllm", "--guard", str(__import__("os").getpid()),
                          "--", sys.executable, "-c",
                          "import subprocess, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"],
                         start_new_session=True)
print(guard.pid, flush=True)
time.sleep(300)
"""



def test_guard_ends_the_whole_group_when_the_parent_is_killed(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    pgid = None
    try:
        pgid = int(parent.stdout.readline())
        deadline = time.monotonic() + 20
        while len(group_members(pgid)) < 3 and time.monotonic() < deadline:  # guard, command, its grandchild
            time.sleep(0.1)
        assert len(group_members(pgid)) >= 3
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 15
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not group_members(pgid), "the guard left orphans behind"
    finally:
        if parent.poll() is None:
            parent.kill()
        for pid in group_members(pgid) if pgid else []:
            os.kill(pid, 9)


def _run(tmp_path, embedded_model, *, adapter: bool, dora: bool = False, merged: bool = True):
    from tuitune.core.training.config import TrainConfig

    run = tmp_path / "proj" / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(TrainConfig(base="smollm2-135m-instruct", base_path=str(embedded_model)).to_yaml())
    if adapter:
        a = _adapter(run, "adapter", dora=dora)
        assert a == run / "adapter"
    if merged:
        _copy_model(embedded_model, run / "merged", template=True)
    return Settings(project=tmp_path / "proj")


def test_run_id_resolves_to_adapter_on_its_base_or_to_merged(embedded_model, tmp_path):
    s = _run(tmp_path, embedded_model, adapter=True)
    spec = serving_plan.resolve_spec(s, "r1")
    assert spec.name == "r1" and spec.path.name == "adapter" and spec.base == embedded_model
    assert spec.base_name == "smollm2-135m-instruct"
    assert serving_plan.resolve_spec(s, "r1", merged=True).path.name == "merged"
    assert serving_plan.resolve_spec(s, str(embedded_model)).name == embedded_model.name  # a folder: named after it


def test_dora_run_is_served_merged_and_unfinished_run_is_a_clear_error(embedded_model, tmp_path):
    s = _run(tmp_path, embedded_model, adapter=True, dora=True)
    assert serving_plan.resolve_spec(s, "r1").path.name == "merged"
    shutil.rmtree(s.project / "runs" / "r1" / "merged")
    with pytest.raises(ServingError, match="no merged model"):
        serving_plan.resolve_spec(s, "r1")
    with pytest.raises(ServingError, match="Known models"):
        serving_plan.resolve_spec(s, "no-such-model")


def test_fallback_to_transformers_only_when_vllm_cannot_run(embedded_model, tmp_path):
    from tuitune.core.serving.chat import TransformersBackend, open_backends

    specs = [ModelSpec("base", embedded_model)]
    engines = open_backends(specs, tmp_path, Settings(vllm_kv_cache_gib=100_000), engine="auto", timeout=5)
    assert engines.engine == "transformers" and engines.group is None and "memory" in engines.note
    assert isinstance(engines.backends[0], TransformersBackend) and engines.backends[0].name == "base"
    with pytest.raises(serving.VLLMUnavailable):
        open_backends(specs, tmp_path, Settings(vllm_kv_cache_gib=100_000), engine="vllm", timeout=5)
    # a start failure that is not "vLLM is impossible here" is NOT hidden behind the fallback
    bare = _copy_model(embedded_model, tmp_path / "bare", template=False)
    with pytest.raises(serving.ChatTemplateMissing):
        open_backends([ModelSpec("bare", bare)], tmp_path, Settings(), engine="auto", timeout=5)
