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
from tuitune.core.serving import preflight as serving
from tuitune.core.serving.errors import ChatTemplateMissing, ServingError, VLLMUnavailable
from tuitune.core.serving.plan import ModelSpec
from tuitune.core.serving.pool import EnginePool
from tuitune.core.serving.vllm import VLLMServer, lora_rank
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
    server = VLLMServer(bare, name="bare", log_path=tmp_path / "log.txt", settings=Settings())
    with pytest.raises(ChatTemplateMissing, match="no chat template") as e:
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
    with pytest.raises(VLLMUnavailable, match="memory") as e:
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
        lora_rank(_adapter(tmp_path, "d", dora=True))


PARENT = r"""
import subprocess, sys, time
guard = subprocess.Popen([sys.executable, "-m", "tuitune.core.serving.guard", str(__import__("os").getpid()),
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
    from tuitune.core.serving.backends import TransformersBackend

    specs = [ModelSpec("base", embedded_model)]
    pool = EnginePool(Settings(vllm_kv_cache_gib=100_000), tmp_path)
    backends = pool.backends(specs, engine="auto", timeout=5)
    assert not pool.running() and "memory" in pool.note
    assert [type(b) for b in backends] == [TransformersBackend] and backends[0].name == "base"
    assert backends[0].engine == "transformers" and backends[0].location == "in-process"
    with pytest.raises(VLLMUnavailable):
        pool.backends(specs, engine="vllm", timeout=5)
    # a start failure that is not "vLLM is impossible here" is NOT hidden behind the fallback
    bare = _copy_model(embedded_model, tmp_path / "bare", template=False)
    with pytest.raises(ChatTemplateMissing):
        EnginePool(Settings(), tmp_path).backends([ModelSpec("bare", bare)], engine="auto", timeout=5)
    # the transformers engine needs a full model: an adapter without its run's merged folder is a clear error
    (tmp_path / "lone").mkdir()
    adapter = _adapter(tmp_path / "lone", "adapter")
    with pytest.raises(ServingError, match="merged"):
        pool.backends([ModelSpec("r1", adapter, base=embedded_model)], engine="transformers")


def test_chat_targets_tuned_first_then_the_run_base(embedded_model, tmp_path):
    """chat_targets (chat and eval): the tuned run first, then the base it was trained from; a LoRA run is
    served by its base's server, so where vLLM cannot run both come from the transformers fallback."""
    from tuitune.core.serving.pool import chat_targets

    s = _run(tmp_path, embedded_model, adapter=True)
    s = s.model_copy(update={"vllm_kv_cache_gib": 100_000})
    pool = EnginePool(s, tmp_path / "logs")
    backends = chat_targets(pool, "r1", with_base=True)
    assert [b.name for b in backends] == ["r1", "smollm2-135m-instruct"]
    assert [b.path for b in backends] == [s.project / "runs" / "r1" / "merged", embedded_model]
    assert [b.name for b in chat_targets(pool, "r1", with_base=False)] == ["r1"]


def test_pool_builds_the_embedded_teacher_once_for_cli_and_tui(tmp_path, home):
    """The embedded teacher's endpoint comes from one builder (EnginePool.live_teacher): a named remote teacher
    passes through untouched; the embedded one needs vLLM, so where vLLM cannot run that is said, not hidden."""
    from tuitune.core.synth.teacher import TeacherConfig

    s = Settings(home=home, project=tmp_path, vllm_kv_cache_gib=100_000)
    pool = EnginePool(s, tmp_path / "logs")
    remote = TeacherConfig("remote", "http://127.0.0.1:9/v1", "m", "KEY_VAR")
    assert pool.live_teacher(remote) is remote
    with pytest.raises(VLLMUnavailable, match="memory"):
        pool.teacher_config("embedded")
    assert not pool.running()


def test_synth_cli_gets_the_embedded_teacher_from_the_pool(project, home, monkeypatch):
    """`tuitune synth` with the embedded teacher asks the engine pool for it (the TUI's builder): where vLLM
    cannot run, the pool's reason is the command's error (exit 1), and no server is left behind."""
    from click.testing import CliRunner

    from tuitune.cli import main
    from tuitune.core.data.samples import Sample
    from tuitune.core.data.store import Store

    calls = []
    real = EnginePool.live_teacher
    monkeypatch.setattr(EnginePool, "live_teacher", lambda self, cfg: calls.append(cfg.name) or real(self, cfg))
    monkeypatch.setenv("TUITUNE_HOME", str(home))
    monkeypatch.setenv("TUITUNE_VLLM_KV_CACHE_GIB", "100000")
    monkeypatch.delenv("TUITUNE_TEACHER_BASE_URL", raising=False)
    with Store.open(project) as st:
        st.set_task(description="Explain made-up words.")
        st.add_samples([Sample(f"Explain quib{i}", f"Quib{i} is a thing.", origin="seed") for i in range(3)])
    r = CliRunner().invoke(main, ["--project", str(project), "synth", "--n", "2", "--teacher", "embedded"])
    assert calls == ["embedded"], r.output
    assert r.exit_code == 1 and "too little memory for vLLM" in r.output and "Traceback" not in r.output
