"""The qlora base in 4 or 8 bits (`quant: nf4 | int8`): the config field and its refusals, the bitsandbytes config
the worker loads with, the GPU memory plan per bit width on made-up machines, and the dry run that shows it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tuitune.commands.train import config_from
from tuitune.core import hardware
from tuitune.core.data.formats import read_file
from tuitune.core.training import gpu
from tuitune.core.training.config import ConfigError, TrainConfig
from tuitune.core.training.quant import bnb_config, quant_name

GIB = 2**30
LLAMA_8B, LLAMA_VOCAB = 8_030_000_000, 128256


def test_quant_defaults_to_nf4_and_takes_int8_everywhere_a_setting_comes_from():
    assert TrainConfig().quant == "nf4"
    assert config_from(TrainConfig(), {"quant": "int8"}, ()).quant == "int8"  # --quant int8
    assert config_from(TrainConfig(), {}, ("quant=int8",)).quant == "int8"  # --set quant=int8
    cfg = TrainConfig.from_yaml("method: qlora\nquant: int8\n", where="my.yaml")
    assert cfg.quant == "int8" and TrainConfig.from_yaml(cfg.to_yaml()) == cfg
    assert "quant: int8" in cfg.to_yaml()


@pytest.mark.parametrize("bad", ["8", 8, "fp4", "int4", ""])
def test_other_quants_are_refused_naming_the_field_and_the_choices(bad):
    with pytest.raises(ConfigError, match=r"my.yaml: quant: .*must be nf4 \(4-bit\) or int8 \(8-bit\)"):
        TrainConfig.from_yaml(f"quant: {json.dumps(bad)}\n", where="my.yaml")
    with pytest.raises(ConfigError, match="quant: "):
        config_from(TrainConfig(), {}, (f"quant={bad}",))


def test_bnb_config_per_bit_width():
    assert bnb_config(TrainConfig(method="lora"), True) is None
    assert bnb_config(TrainConfig(method="dpo", adapter="lora", quant="int8"), False) is None  # only qlora quantises
    q8 = bnb_config(TrainConfig(method="qlora", quant="int8"), False)
    assert (q8.load_in_8bit, q8.load_in_4bit, q8.quantization_method()) == (True, False, "llm_int8")
    q4 = bnb_config(TrainConfig(method="qlora"), False)
    assert (q4.load_in_4bit, q4.bnb_4bit_quant_type, q4.bnb_4bit_use_double_quant) == (True, "nf4", True)
    assert str(q4.bnb_4bit_compute_dtype) == "torch.float32"  # CPU: fp32 compute
    assert str(bnb_config(TrainConfig(method="qlora", bf16=True), True).bnb_4bit_compute_dtype) == "torch.bfloat16"
    dpo8 = bnb_config(TrainConfig(method="dpo", adapter="qlora", quant="int8"), True)
    assert dpo8.load_in_8bit


def test_quant_name_reads_what_was_loaded():
    """An 8-bit BitsAndBytesConfig still says bnb_4bit_quant_type fp4 (its default): the name must not."""
    assert bnb_config(TrainConfig(method="qlora", quant="int8"), False).bnb_4bit_quant_type == "fp4"
    assert quant_name(bnb_config(TrainConfig(method="qlora", quant="int8"), False)) == "int8"
    assert quant_name(bnb_config(TrainConfig(method="qlora"), False)) == "nf4"
    assert quant_name(bnb_config(TrainConfig(method="qlora"), False).to_dict()) == "nf4"
    assert quant_name({"load_in_8bit": True, "bnb_4bit_quant_type": "fp4"}) == "int8"
    assert quant_name(None) is None


def test_memory_plan_counts_bytes_per_parameter_of_each_bit_width():
    cfg = {"batch_size": 4, "micro_batch_size": 1, "max_length": 1024}
    logits = 1024 * LLAMA_VOCAB * 4
    need = {q: gpu.need_gib(TrainConfig(method="qlora", quant=q, **cfg), LLAMA_8B, LLAMA_VOCAB) for q in ("nf4", "int8")}
    assert need["nf4"] == pytest.approx(1 + (LLAMA_8B * 0.56 + logits) / GIB)  # 4 bits + double-quantized scales
    assert need["int8"] == pytest.approx(1 + (LLAMA_8B * 1.0 + logits) / GIB)  # 1 byte per weight
    bf16_lora = gpu.need_gib(TrainConfig(method="lora", bf16=True, **cfg), LLAMA_8B, LLAMA_VOCAB)
    assert need["nf4"] < need["int8"] < bf16_lora
    # A preference method on a qlora adapter is planned the same way.
    dpo = gpu.need_gib(TrainConfig(method="dpo", adapter="qlora", quant="int8", **cfg), LLAMA_8B, LLAMA_VOCAB)
    assert dpo > need["int8"]  # (chosen + rejected logits at batch_size)


def card(name, total):
    return hardware.from_dict({"gpus": [{"name": name, "total_gib": total, "free_gib": total - 1,
                                         "capability": "8.6"}], "cpu_cores": 8})


def test_an_8b_model_fits_an_8gb_card_in_nf4_only_and_a_12gb_card_in_both():
    cfg = {"method": "qlora", "batch_size": 4, "micro_batch_size": 1, "max_length": 1024}
    nf4 = gpu.need_gib(TrainConfig(**cfg), LLAMA_8B, LLAMA_VOCAB)
    int8 = gpu.need_gib(TrainConfig(**cfg, quant="int8"), LLAMA_8B, LLAMA_VOCAB)
    small, mid = card("NVIDIA GeForce RTX 3070", 8), card("NVIDIA GeForce RTX 3060", 12)
    assert gpu.choose_gpus(small, 1, nf4, []) == (0,)
    with pytest.raises(ConfigError, match=r"needs at least 9.\d GiB .* has 7.0 of 8 GiB free.*quant nf4 needs the "
                                          r"least"):
        gpu.choose_gpus(small, 1, int8, [])
    assert gpu.choose_gpus(mid, 1, int8, []) == (0,)
    with pytest.raises(ConfigError, match="has 11.0 of 12 GiB free"):
        gpu.choose_gpus(mid, 1, gpu.need_gib(TrainConfig(method="lora", bf16=True, batch_size=4, micro_batch_size=1,
                                                         max_length=1024), LLAMA_8B, LLAMA_VOCAB), [])


def test_precision_names_the_quantised_base():
    assert gpu.precision(TrainConfig(method="qlora", quant="int8", bf16=True), True) == \
        "bf16 mixed, 8-bit int8 frozen base"
    assert gpu.precision(TrainConfig(method="qlora"), False) == "fp32, 4-bit nf4 frozen base"
    assert gpu.precision(TrainConfig(method="lora"), False) == "fp32"
    assert gpu.quant_words(TrainConfig(method="lora", quant="int8")) == ""
    assert gpu.quant_words(TrainConfig(method="kto", adapter="qlora", quant="int8")) == \
        "8-bit int8 base (bitsandbytes)"


def test_int8_is_not_refused_on_cpu():
    """bitsandbytes 0.50 runs LLM.int8() on CPU (measured; e2e/test_train_int8.py trains on it): no refusal."""
    gpu.check_cuda_options(TrainConfig(method="qlora", quant="int8"), False, False)


@pytest.fixture
def filled(store, project, real_fixtures):
    samples = read_file(real_fixtures / "llamafactory_alpaca_en_demo.json").samples[:8]
    store.add_samples([s.with_(status="accepted") for s in samples])
    return project


def test_dry_run_shows_the_bit_width(filled, embedded_model, tmp_path):
    f = tmp_path / "cpu.json"
    f.write_text(json.dumps({"gpus": [], "cpu_cores": 2, "ram_gib": 24}))
    env = {**os.environ, hardware.ENV: str(f)}

    def dry(*args):
        out = subprocess.run([sys.executable, "-m", "tuitune.cli", "--project", str(filled), "train", "--dry-run",
                              "--set", "bf16=false", *args], capture_output=True, text=True, env=env, check=False,
                             timeout=300)
        return out

    out = dry("--method", "qlora", "--quant", "int8")
    assert out.returncode == 0, out.stderr
    assert "\nquant: int8\n" in out.stdout
    assert "# quantised: 8-bit int8 base (bitsandbytes); quant: nf4 (4-bit) or int8 (8-bit)" in out.stdout
    bad = dry("--method", "qlora", "--quant", "16")
    assert bad.returncode == 2 and "'16' is not one of 'nf4', 'int8'" in bad.stderr
    assert not (filled / "runs").exists()
