"""bf16 on CPU is chosen by measurement, not by the CPU flag alone: measured once per machine, cached, and
read by the preset."""

from __future__ import annotations

import json
import math

import pytest

from tuitune.core.training import bf16_probe, presets
from tuitune.core.training.config import TrainConfig


def _fixed(speedup):
    calls = []

    def measure():
        calls.append(1)
        return {"fp32_s": 1.0, "bf16_s": 1.0 / speedup, "speedup": speedup}

    return measure, calls


def test_the_real_probe_times_both_precisions():
    r = bf16_probe.measure(hidden=128, intermediate=256, tokens=32, rank=4, repeats=2)
    assert r["fp32_s"] > 0 and r["bf16_s"] > 0 and math.isfinite(r["speedup"])
    assert r["speedup"] == pytest.approx(r["fp32_s"] / r["bf16_s"])


@pytest.mark.parametrize("speedup, expected", [(0.61, False), (1.05, False), (1.1, True), (1.6, True)])
def test_bf16_only_when_clearly_faster(tmp_path, speedup, expected):
    measure, _ = _fixed(speedup)
    assert bf16_probe.bf16_pays(tmp_path, measure) is expected


def test_measured_once_per_machine_then_read_from_the_cache(tmp_path):
    measure, calls = _fixed(0.6)
    assert bf16_probe.bf16_pays(tmp_path, measure) is False
    assert bf16_probe.bf16_pays(tmp_path, measure) is False
    assert len(calls) == 1
    cache = json.loads((tmp_path / bf16_probe.CACHE_FILE).read_text())
    assert cache[bf16_probe.machine_key()]["speedup"] == 0.6
    # another machine (or torch version) in the same home is measured on its own
    cache = {"Other CPU | torch 0 | 64 threads": {"speedup": 3.0}}
    (tmp_path / bf16_probe.CACHE_FILE).write_text(json.dumps(cache))
    assert bf16_probe.bf16_pays(tmp_path, measure) is False and len(calls) == 2


def test_a_broken_cache_is_measured_again(tmp_path):
    (tmp_path / bf16_probe.CACHE_FILE).write_text("{not json")
    measure, calls = _fixed(1.5)
    assert bf16_probe.bf16_pays(tmp_path, measure) is True and len(calls) == 1
    assert json.loads((tmp_path / bf16_probe.CACHE_FILE).read_text())[bf16_probe.machine_key()]["speedup"] == 1.5


@pytest.mark.parametrize("speedup", [0.6, 1.4])
def test_the_preset_follows_the_measurement_on_a_native_bf16_cpu(tmp_path, speedup):
    (tmp_path / bf16_probe.CACHE_FILE).write_text(json.dumps({bf16_probe.machine_key(): {"speedup": speedup}}))
    cpu = presets.Hardware(cuda=False, gpus=0, bf16=True, probe_dir=tmp_path)
    assert presets.apply(TrainConfig(), [100] * 10, cpu).bf16 is (speedup >= bf16_probe.MIN_SPEEDUP)
    # an explicit choice is kept either way
    assert presets.apply(TrainConfig(bf16=True), [100] * 10, cpu).bf16 is True
    assert presets.apply(TrainConfig(bf16=False), [100] * 10, cpu).bf16 is False


def test_no_probe_no_native_bf16_or_a_gpu(tmp_path):
    assert presets.Hardware(cuda=False, gpus=0, bf16=False, probe_dir=tmp_path).bf16_default() is False
    assert not (tmp_path / bf16_probe.CACHE_FILE).exists()  # nothing measured where bf16 would be emulated
    assert presets.Hardware(cuda=False, gpus=0, bf16=True).bf16_default() is False  # unmeasured CPU: fp32
    assert presets.Hardware(cuda=True, gpus=1, bf16=True).bf16_default() is True


def test_the_real_decode_probe_times_bf16_weights_against_fp32():
    r = bf16_probe.measure_decode(hidden=64, intermediate=128, rows=2, layers=1, calls=2, repeats=2)
    assert r["fp32_s"] > 0 and r["bf16_s"] > 0 and r["speedup"] == pytest.approx(r["fp32_s"] / r["bf16_s"])


def test_decoding_is_measured_apart_from_training(tmp_path):
    """One CPU can train slower in bf16 autocast and still decode faster with bf16 weights: two answers, one file."""
    train, train_calls = _fixed(0.7)
    decode, decode_calls = _fixed(1.8)
    assert bf16_probe.bf16_pays(tmp_path, train) is False
    assert bf16_probe.bf16_decode_pays(tmp_path, decode) is True
    assert bf16_probe.bf16_decode_pays(tmp_path, decode) is True and bf16_probe.bf16_pays(tmp_path, train) is False
    assert len(train_calls) == len(decode_calls) == 1
    cache = json.loads((tmp_path / bf16_probe.CACHE_FILE).read_text())
    assert cache[bf16_probe.machine_key()]["speedup"] == 0.7
    assert cache[bf16_probe.machine_key() + " | decode"]["speedup"] == 1.8


def test_the_verdict_model_follows_the_decode_measurement(tmp_path, monkeypatch):
    from tuitune.core.evaluation.local import decode_in_bf16

    monkeypatch.setattr(presets, "cpu_has_native_bf16", lambda: True)
    (tmp_path / bf16_probe.CACHE_FILE).write_text(json.dumps({bf16_probe.machine_key() + " | decode": {"speedup": 1.5}}))
    assert decode_in_bf16("cpu", tmp_path) is True
    (tmp_path / bf16_probe.CACHE_FILE).write_text(json.dumps({bf16_probe.machine_key() + " | decode": {"speedup": 0.9}}))
    assert decode_in_bf16("cpu", tmp_path) is False
    assert decode_in_bf16("cpu", None) is False  # nowhere to keep a measurement: fp32, nothing measured
    assert decode_in_bf16("cuda", None) is True
    monkeypatch.setattr(presets, "cpu_has_native_bf16", lambda: False)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert decode_in_bf16("cpu", empty) is False and not list(empty.iterdir())  # emulated bf16: never measured
