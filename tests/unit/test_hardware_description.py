"""The machine description (TUITUNE_HARDWARE, nvidia-smi) and model sizes from config.json: no GPU needed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tuitune.core import hardware
from tuitune.core.hardware import HardwareError

ISSUE_EXAMPLE = ('{"gpus": [{"name": "NVIDIA A10", "total_gib": 24, "free_gib": 22.5, "capability": "8.6", '
                 '"bf16": true}], "cpu_cores": 32, "ram_gib": 128}')


def test_issue_format_is_read_exactly(tmp_path, monkeypatch):
    f = tmp_path / "hw.json"
    f.write_text(ISSUE_EXAMPLE)
    monkeypatch.setenv(hardware.ENV, str(f))
    m = hardware.detect_now()
    assert m.gpus == (hardware.GPU("NVIDIA A10", 24.0, 22.5, "8.6", True, 0),)
    assert (m.cpu_cores, m.ram_gib, m.cuda, m.bf16, m.described) == (32, 128.0, True, True, True)


def test_empty_gpu_list_is_a_cpu_machine():
    m = hardware.from_dict({"gpus": [], "cpu_cores": 2, "ram_gib": 24})
    assert not m.cuda and not m.bf16 and m.cpu_cores == 2


def test_bf16_follows_capability_when_not_given():
    m = hardware.from_dict({"gpus": [{"name": "Tesla T4", "total_gib": 15, "capability": "7.5"},
                                     {"name": "H100", "total_gib": 80, "capability": "9.0"}], "cpu_cores": 8})
    assert [g.bf16 for g in m.gpus] == [False, True] and m.gpus[0].free_gib == 15
    assert not m.bf16  # a mixed machine trains as its weakest GPU


@pytest.mark.parametrize("data, field", [
    ({"gpus": [{"name": "A10", "total_gib": 24, "free_gib": 30}]}, "gpus[0].free_gib"),
    ({"gpus": [{"name": "A10", "total_gib": "24"}]}, "gpus[0].total_gib"),
    ({"gpus": [{"name": "A10", "total_gib": 24, "bf16": "yes"}]}, "gpus[0].bf16"),
    ({"gpus": [{"total_gib": 24}]}, "gpus[0]"),
    ({"gpus": {}}, "gpus must be a list"),
    ({"gpus": [], "cpu_cores": 0}, "cpu_cores"),
    ({"gpus": [], "gpu": []}, "unknown field(s) gpu"),
])
def test_bad_descriptions_name_the_field(data, field):
    with pytest.raises(HardwareError, match=field.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                       .replace(")", r"\)")):
        hardware.from_dict(data, "hw.json")


def test_bad_json_names_file_and_line(tmp_path):
    f = tmp_path / "hw.json"
    f.write_text('{"gpus": [],\n "cpu_cores": 4,,\n}')
    with pytest.raises(HardwareError, match=r"hw.json: line 2"):
        hardware.load_file(f)


NVIDIA_SMI = """0, NVIDIA H100 80GB HBM3, 81559, 80000, 9.0, 550.54.15
1, NVIDIA H100 80GB HBM3, 81559, 1200, 9.0, 550.54.15
"""


def test_nvidia_smi_output_parsed(monkeypatch):
    gpus, driver = hardware.parse_nvidia_smi(NVIDIA_SMI)
    assert driver == "550.54.15"
    assert [(g.index, g.name, round(g.total_gib, 1), round(g.free_gib, 2), g.bf16) for g in gpus] == [
        (0, "NVIDIA H100 80GB HBM3", 79.7, 78.12, True), (1, "NVIDIA H100 80GB HBM3", 79.7, 1.17, True)]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    visible = hardware._visible(gpus)
    assert [(g.index, round(g.free_gib, 2)) for g in visible] == [(0, 1.17)]  # renumbered as CUDA sees it


def test_t4_without_bf16():
    gpus, _ = hardware.parse_nvidia_smi("0, Tesla T4, 15360, 15000, 7.5, 535.104.05\n")
    assert gpus[0].bf16 is False


def test_config_only_folder_sizes_like_the_real_model(tmp_path):
    from tuitune.core.models import embedded_dir

    real = embedded_dir(Path.home() / ".cache" / "tuitune" / "models")
    if not (real / "model.safetensors").exists():
        pytest.skip("embedded model not prepared")
    only = tmp_path / "only-config"
    only.mkdir()
    shutil.copy(real / "config.json", only / "config.json")
    assert hardware.model_size(only) == hardware.model_size(real)
    assert abs(hardware.model_size(real).weights_gib - (real / "model.safetensors").stat().st_size / 2**30) < 0.01


LLAMA3_70B = {"architectures": ["LlamaForCausalLM"], "hidden_size": 8192, "num_hidden_layers": 80,
              "num_attention_heads": 64, "num_key_value_heads": 8, "intermediate_size": 28672, "vocab_size": 128256,
              "max_position_embeddings": 8192, "torch_dtype": "bfloat16", "tie_word_embeddings": False}


def test_llama3_70b_from_config_alone(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA3_70B))
    size = hardware.model_size(tmp_path)
    assert 70.0e9 < size.params < 71.0e9
    assert 130 < size.weights_gib < 133
    assert size.kv_bytes_per_token() == 2 * 80 * 8 * 128 * 2


def test_quantized_checkpoint_uses_file_size(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA3_70B))
    with open(tmp_path / "model.safetensors", "wb") as f:
        f.truncate(40 * 2**30)  # sparse: a 4-bit 70B is about 40 GiB
    assert round(hardware.model_size(tmp_path).weights_gib) == 40


def test_folder_without_config(tmp_path):
    with pytest.raises(HardwareError, match="no readable config.json"):
        hardware.model_size(tmp_path)
