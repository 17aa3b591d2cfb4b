"""The embedded model: converted once, atomically, and it answers a simple question sensibly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tuitune.core import models

pytestmark = pytest.mark.e2e


def test_embedded_model_generates_a_sensible_answer(embedded_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert (embedded_model / "model.safetensors").exists()
    tok = AutoTokenizer.from_pretrained(embedded_model)
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    model = AutoModelForCausalLM.from_pretrained(embedded_model)
    enc = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**enc, max_new_tokens=24, do_sample=False)
    answer = tok.decode(out[0][enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer


def test_killed_conversion_leaves_nothing_that_looks_ready_then_converts(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "TUITUNE_HOME": str(home)}
    cmd = [sys.executable, "-m", "tuitune.cli", "models", "prepare"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    models_dir = home / "models"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(models_dir.glob(".smollm2-135m-instruct.tmp-*")):
        time.sleep(0.05)
    time.sleep(1.0)
    assert proc.poll() is None, "conversion ended before the kill"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    target = models.embedded_dir(models_dir)
    assert not models.is_ready(target) and not target.exists()
    listed = json.loads(subprocess.run([sys.executable, "-m", "tuitune.cli", "models", "--json"], env=env,
                                       capture_output=True, text=True, check=True).stdout)
    assert listed[0]["name"] == "smollm2-135m-instruct" and listed[0]["ready"] is False
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert models.is_ready(target)
    assert not list(models_dir.glob(".smollm2-135m-instruct.tmp-*"))  # the stale half folder was cleaned
    assert {"config.json", "model.safetensors", "tokenizer.json", "tuitune-model.json"} <= {
        p.name for p in target.iterdir()}


def test_local_model_folder_registration(tmp_path, embedded_model):
    mdir = tmp_path / "models"
    with pytest.raises(models.ModelError, match="no config.json"):
        models.register(mdir, "mine", tmp_path)
    models.register(mdir, "mine", embedded_model)
    assert models.resolve(mdir, "mine") == embedded_model.resolve()
    with pytest.raises(models.ModelError, match="No model named 'nope'"):
        models.resolve(mdir, "nope")
