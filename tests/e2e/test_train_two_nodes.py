"""e2e: a run over two "nodes" of one CPU rank each on loopback. `train --dry-run` prints each node's command;
`train --nodes 2` starts node 0 and prints node 1's command (launch.json holds both); the test starts node 1
from that command, as a user would on the second machine, and the run trains 2 steps to `done`, with rank 0's
events only."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess

import pytest
from training_runs import cli

from tuitune.core.data.formats import read_file
from tuitune.core.data.store import Store
from tuitune.core.training import jobs

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_on_loopback_train_two_steps(tmp_path, real_fixtures, embedded_model):
    samples = sorted(read_file(real_fixtures / "llamafactory_alpaca_en_demo.json").samples,
                     key=lambda s: len(s.instruction) + len(s.input) + len(s.output))[:8]
    with Store.open(tmp_path) as store:
        store.add_samples([s.with_(status="accepted") for s in samples])
    port = free_port()
    args = ["--device", "cpu", "--nodes", "2", "--master-addr", "127.0.0.1", "--master-port", str(port),
            "--max-steps", "2", "--set", "lora_r=4", "--set", "batch_size=2", "--set", "merge=false",
            "--set", "check_prompts=0", "--set", "holdout=0"]
    dry = cli(tmp_path, "train", *args, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["world_size"] == 2 and [n["node_rank"] for n in plan["node_commands"]] == [0, 1]
    assert all(f"--master_port={port}" in n["command"] and "--nnodes=2" in n["command"]
               for n in plan["node_commands"])

    res = cli(tmp_path, "train", *args)
    assert res.returncode == 0, res.stderr
    run_id = res.stdout.strip()
    d = tmp_path / "runs" / run_id
    launch = json.loads((d / "launch.json").read_text(encoding="utf-8"))
    node1 = launch["node_commands"][1]
    assert f"node 1: {node1['line']}" in res.stderr  # what the user copies to the other machine
    # The dry run's commands are the launch's, but for the run folder's name.
    assert [n["line"].replace(run_id, "RUN_ID") for n in launch["node_commands"]] == \
        [n["line"] for n in plan["node_commands"]]

    other = subprocess.run(shlex.split(node1["line"]), capture_output=True, text=True, timeout=600, check=False)
    assert other.returncode == 0, other.stderr[-3000:]
    info = jobs.wait(d, timeout=300)
    events = jobs.read_events(d)[0]
    assert info.status == "done", (d / "worker.log").read_text()[-3000:]
    model = next(e for e in events if e["event"] == "model")
    assert model.get("world_size", 2) == 2
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == [1, 2]  # rank 0 alone writes events: one per step, not two
    assert (d / "adapter" / "adapter_config.json").is_file()
