"""Training config YAML round-trip, presets and event-file tailing (no model needed)."""

from __future__ import annotations

import pytest

from tuitune.core.training import presets
from tuitune.core.training.config import ConfigError, TrainConfig

CPU = presets.Hardware(cuda=False, gpus=0, bf16=False)
GPU = presets.Hardware(cuda=True, gpus=1, bf16=True)


def test_yaml_round_trip_keeps_every_field():
    cfg = TrainConfig(method="dora", epochs=3, lora_r=8, target_modules=["q_proj", "v_proj"], max_length=300,
                      text_files=["a.txt"], bf16=False)
    again = TrainConfig.from_yaml(cfg.to_yaml())
    assert again == cfg
    assert "lora_r: 8" in cfg.to_yaml()


def test_yaml_errors_name_the_field():
    with pytest.raises(ConfigError, match="method"):
        TrainConfig.from_yaml("method: sgd\n")
    with pytest.raises(ConfigError, match="lora_rank"):
        TrainConfig.from_yaml("lora_rank: 8\n")  # typo of lora_r: refused, not ignored
    with pytest.raises(ConfigError, match="mapping"):
        TrainConfig.from_yaml("- a\n- b\n")


def test_small_data_preset_trains_longer_with_fitting_length():
    lengths = [120, 340, 779, 200] * 12 + [90, 100]  # 50 records
    cfg = presets.apply(TrainConfig(), lengths, CPU)
    assert cfg.epochs == 10 and cfg.learning_rate == 2e-4 and cfg.lora_r == 16 and cfg.lora_alpha == 32
    assert cfg.max_length == 832  # longest (779) rounded up to a multiple of 64
    assert cfg.bf16 is False and cfg.gradient_checkpointing is False  # CPU: fp32, no checkpointing
    assert 1 <= cfg.batch_size <= 16 and cfg.save_steps >= 1
    big = presets.apply(TrainConfig(), [200] * 5000, GPU)
    assert big.epochs == 2 and big.lora_r == 32 and big.bf16 and big.gradient_checkpointing
    assert presets.apply(TrainConfig(method="full"), [100] * 10, CPU).learning_rate == 2e-5


def test_cpu_stacks_only_short_records_per_pass_and_cuda_the_whole_batch():
    cpu = presets.apply(TrainConfig(batch_size=4), [300] * 10, CPU)
    assert (cpu.batch_size, cpu.micro_batch_size) == (4, 1)  # accumulate 4 unpadded passes per step
    # short records: as many per pass as fit the CPU's per-pass token budget, always a divisor of batch_size
    assert presets.apply(TrainConfig(batch_size=8), [110, 130] * 5, CPU).micro_batch_size == 2
    assert presets.apply(TrainConfig(batch_size=8), [80, 90] * 5, CPU).micro_batch_size == 4
    assert presets.apply(TrainConfig(batch_size=6), [80, 90] * 5, CPU).micro_batch_size == 3
    assert presets.apply(TrainConfig(batch_size=5), [80, 90] * 5, CPU).micro_batch_size == 1
    assert presets.apply(TrainConfig(batch_size=4), [5] * 10, CPU).micro_batch_size == 4
    assert presets.apply(TrainConfig(batch_size=4), [300] * 10, GPU).micro_batch_size == 4
    assert presets.apply(TrainConfig(method="kto", batch_size=4), [300] * 10, CPU).micro_batch_size == 4
    assert presets.apply(TrainConfig(batch_size=4, micro_batch_size=2), [300] * 10, CPU).micro_batch_size == 2


@pytest.mark.parametrize("cpuinfo, native", [
    ("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n", True),  # Zen 4 / Cooper Lake
    ("flags\t\t: fpu avx2 amx_bf16 amx_tile\n", True),  # Sapphire Rapids
    ("Features\t: fp asimd bf16 i8mm\n", True),  # Arm (Graviton 3)
    ("flags\t\t: fpu sse avx2 avx512f avx512bw\n", False),  # AVX-512 without bf16: emulated, slower
    ("", False),
])
def test_native_bf16_is_read_from_cpu_flags(cpuinfo, native):
    assert presets.cpu_has_native_bf16(cpuinfo) is native


def test_explicit_values_beat_presets():
    cfg = presets.apply(TrainConfig(epochs=1, lora_r=4, batch_size=3, max_length=2048, learning_rate=1e-3),
                        [100] * 10, CPU)
    assert (cfg.epochs, cfg.lora_r, cfg.lora_alpha, cfg.batch_size, cfg.max_length, cfg.learning_rate) == \
        (1, 4, 8, 3, 2048, 1e-3)
