"""The distributed plan on made-up machines: memory per choice, the refusal that names what would fit, the
distributed settings checked against each other, each node's command, and the one resolve step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tuitune.core.hardware import GPU, Machine
from tuitune.core.training import gpu, launch_plan, plan_table, shard_plan
from tuitune.core.training.config import ConfigError, TrainConfig
from tuitune.core.training.presets import Hardware
from tuitune.core.training.resolve import DataStats, Engines, ModelFacts, placement, resolve

Q14 = shard_plan.Size(14_770_000_000, 152_064, 48)
Q7 = shard_plan.Size(7_616_000_000, 152_064, 28)
RUN = {"bf16": True, "max_length": 1024, "batch_size": 8, "micro_batch_size": 1}
NO_EXTRAS = Engines(flash_attn=False, liger=False, deepspeed=True)


def machine(n: int, gib: float = 24.0, ram: float = 128.0) -> Machine:
    return Machine(gpus=tuple(GPU("NVIDIA A10", gib, gib - 1, "8.6", True, i) for i in range(n)), cpu_cores=32,
                   ram_gib=ram, source="made-up.json")


def gpu_hw(n: int) -> Hardware:
    return Hardware(cuda=True, gpus=n, bf16=True)


CPU_HW = Hardware(cuda=False, gpus=0, bf16=False)
CPU = Machine(cpu_cores=2, ram_gib=24, source="made-up.json")
DATA = DataStats(tuple([100] * 90))


def test_each_choice_divides_what_its_engine_shards():
    full = TrainConfig(method="full", **RUN)
    logits_and_overhead = shard_plan.TRAIN_OVERHEAD_GIB + shard_plan.logits_gib(full, Q7.vocab)
    ddp = shard_plan.need(full, Q7, 2, "ddp").gpu_gib - logits_and_overhead
    z2 = shard_plan.need(full, Q7, 2, "zero2").gpu_gib - logits_and_overhead
    z3 = shard_plan.need(full, Q7, 2, "zero3").gpu_gib - logits_and_overhead
    fsdp4 = shard_plan.need(full, Q7, 4, "fsdp").gpu_gib - logits_and_overhead
    gib = Q7.params / 2**30
    assert ddp == pytest.approx(16 * gib)  # fp32 weights, gradients, Adam m and v: all on every GPU
    assert z2 == pytest.approx(4 * gib + 12 * gib / 2)  # weights whole, gradients and optimizer states halved
    gathered = 2 * 4 * gib / Q7.layers
    assert z3 == pytest.approx(16 * gib / 2 + gathered)
    assert fsdp4 == pytest.approx(16 * gib / 4 + gathered)
    off = shard_plan.need(full, Q7, 2, "fsdp", offload=True)
    assert off.gpu_gib - logits_and_overhead == pytest.approx(gathered)
    assert off.cpu_gib == pytest.approx(16 * gib / 2)


def test_need_gib_of_one_rank_is_the_old_bound():
    lora = TrainConfig(method="lora", **RUN)
    old = 1.0 + (Q7.params * 2 + 1 * 1024 * Q7.vocab * 4) / 2**30  # 16-bit frozen base + fp32 logits of one pass
    assert gpu.need_gib(lora, Q7.params, Q7.vocab) == pytest.approx(old)
    assert gpu.need_gib(lora.updated(distributed="fsdp"), Q7.params, Q7.vocab, world=2, layers=28) < old


def test_refusal_names_the_choice_that_fits():
    cfg = TrainConfig(method="lora", gpus=2, **RUN)  # 14B LoRA, ddp: 27.5 GiB of 16-bit base on each 24 GB card
    model = ModelFacts(params=Q14.params, vocab=Q14.vocab, layers=Q14.layers, max_position=32768)
    with pytest.raises(ConfigError) as e:
        resolve(cfg, DATA, model, gpu_hw(2), machine(2), engines=NO_EXTRAS)
    assert "this fits with fsdp on 2 GPUs (--gpus 2 --distributed fsdp)" in str(e.value)
    ok = resolve(cfg.updated(distributed="fsdp"), DATA, model, gpu_hw(2), machine(2), engines=NO_EXTRAS)
    assert ok.world == 2 and ok.need.gpu_gib < 23
    assert "fsdp: FSDP2 full shard" in ok.reasons["distributed"]


def test_refusal_without_any_fit_offers_no_choice():
    cfg = TrainConfig(method="full", **RUN)
    model = ModelFacts(params=Q14.params, vocab=Q14.vocab, layers=Q14.layers)
    with pytest.raises(ConfigError) as e:
        resolve(cfg, DATA, model, gpu_hw(1), machine(1, ram=32), engines=NO_EXTRAS)
    assert "this fits with" not in str(e.value) and "per GPU" in str(e.value)


def test_what_fits_prefers_sharding_over_offload_and_never_shards_qlora():
    lora = TrainConfig(method="lora", **RUN)
    assert shard_plan.what_fits(lora, Q14, [23.0, 23.0])[:3] == ("fsdp", False, 2)
    assert shard_plan.what_fits(lora, Q14, [23.0])[:3] == ("fsdp", True, 1)  # one GPU: only offload helps
    qlora = TrainConfig(method="qlora", **RUN)
    assert shard_plan.what_fits(qlora, shard_plan.Size(70_550_000_000, 128_256, 80), [23.0, 23.0]) is None


@pytest.mark.parametrize(("changes", "hw", "words"), [
    ({"offload": True}, "gpu", "offload: true needs distributed"),
    ({"offload": True, "distributed": "fsdp", "cpu_ranks": 2, "device": "cpu"}, "cpu", "this run is on CPU"),
    ({"method": "qlora", "distributed": "fsdp"}, "gpu", "qlora (quantised) base is not supported"),
    ({"nodes": 2}, "gpu", "needs master_addr"),
    ({"cpu_ranks": 2}, "gpu", "cpu_ranks: 2 is for runs on CPU"),
    ({"distributed": "fsdp"}, "cpu", "on one CPU process shards nothing"),
    ({"accelerate_config": "/x.yaml", "distributed": "zero3"}, "gpu", "your accelerate config file decides"),
])
def test_distributed_settings_that_cannot_go_together_are_refused(changes, hw, words):
    cfg = TrainConfig(**changes)
    cuda = hw == "gpu"
    with pytest.raises(ConfigError, match=re.escape(words)):
        placement(cfg, 1 if cuda else 0, cuda, NO_EXTRAS)


def test_zero_without_deepspeed_says_how_to_install_it():
    with pytest.raises(ConfigError, match="needs DeepSpeed"):
        placement(TrainConfig(distributed="zero3", gpus=2), 2, True, Engines(deepspeed=False))
    assert placement(TrainConfig(distributed="fsdp", gpus=2), 2, True, Engines(deepspeed=False)) == (2, 1)


def test_cpu_ranks_resolve_a_schedule_per_rank():
    base = TrainConfig(max_steps=-1, epochs=2.0, batch_size=8, micro_batch_size=4)
    model = ModelFacts(params=134_000_000, vocab=49_152, layers=30, max_position=8192)
    one = resolve(base, DATA, model, CPU_HW, CPU)
    two = resolve(base.updated(cpu_ranks=2, distributed="fsdp"), DATA, model, CPU_HW, CPU)
    assert (one.world, two.world) == (1, 2)
    assert two.steps == pytest.approx(one.steps / 2, abs=1)  # each rank sees half the records
    assert two.effective_batch == 2 * one.effective_batch
    assert "(2 ranks)" in two.reasons["save_steps"] and "2 CPU ranks (gloo)" in two.reasons["distributed"]
    assert "distributed" not in one.reasons


def test_each_node_gets_its_command(tmp_path):
    run = tmp_path / "runs" / "R1"
    [single] = launch_plan.commands(run)
    assert single[1:] == ["-m", "tuitune.core.training.worker", str(run.resolve())]
    [sharded_one] = launch_plan.commands(run, sharded=True)  # fsdp/zero on one GPU still needs a process group
    assert sharded_one[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
    [local] = launch_plan.commands(run, ranks=2)
    assert local[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    nodes = launch_plan.commands(run, ranks=4, nodes=2, master_addr="10.0.0.5", master_port=29511)
    assert [c[3] for c in nodes] == ["--nnodes=2", "--nnodes=2"] and [c[4] for c in nodes] == ["--node_rank=0",
                                                                                                "--node_rank=1"]
    assert all("--master_addr=10.0.0.5" in c and "--master_port=29511" in c and "--nproc_per_node=4" in c
               for c in nodes)
    rec = launch_plan.record(4, 2, "fsdp", nodes, "10.0.0.5", 29511)
    assert rec["world_size"] == 8 and rec["rendezvous"] == "10.0.0.5:29511"
    assert rec["node_commands"][1]["line"].endswith(f"-m tuitune.core.training.worker {run.resolve()}")
    [acc] = launch_plan.commands(run, ranks=8, accelerate_config=str(tmp_path / "mine.yaml"))
    assert acc[1:5] == ["-m", "accelerate.commands.launch", "--config_file", str(tmp_path / "mine.yaml")]


def test_docs_table_is_the_plans_output():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "distributed.md").read_text(encoding="utf-8")
    assert plan_table.markdown() in doc
