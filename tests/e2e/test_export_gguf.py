"""e2e: a trained run -> `tuitune export-model` -> a GGUF that a real GGUF reader loads and answers with, an Ollama
Modelfile with the model's template and stops, a clean hf folder with a model card; a killed export leaves nothing
that looks complete.

The run folder is the one the worker leaves, around the session's `tiny_tuned` adapter (2 real LoRA steps on
LLaMA-Factory's identity demo): config.yaml, data.jsonl, events.jsonl and adapter/ but no merged/, so the export
merges first, as `tuitune merge` does."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

RUN_ID = "20261203-120000-lora-e2e1"
SYSTEM = "You are a friendly assistant. Answer briefly."


def tuitune(project: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuitune.cli", "--project", str(project), *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_tuned, embedded_model, real_fixtures):
    from tuitune.core.data.store import Store
    from tuitune.core.models import EMBEDDED_NAME
    from tuitune.core.training.config import TrainConfig
    from tuitune.core.training.events import EventWriter

    project = tmp_path_factory.mktemp("export")
    with Store.open(project) as store:
        store.set_task(name="Identity bot", system_prompt=SYSTEM)
    run = project / "runs" / RUN_ID
    run.mkdir(parents=True)
    records = json.loads((real_fixtures / "llamafactory_identity.json").read_text(encoding="utf-8"))[:8]
    rows = [{"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": r["instruction"]},
                          {"role": "assistant", "content": r["output"]}]} for r in records]
    (run / "data.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                    encoding="utf-8")
    cfg = TrainConfig(base=EMBEDDED_NAME, base_path=str(embedded_model), data=str(run / "data.jsonl"), holdout=3,
                      max_steps=2, lora_r=8, lora_alpha=16, target_modules="q_proj,v_proj", batch_size=4)
    (run / "config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
    shutil.copytree(tiny_tuned["adapter"], run / "adapter")
    events = EventWriter(run)
    events.emit("started", pid=0)
    for step, loss in ((1, 2.9), (2, 2.4)):
        events.emit("step", step=step, max_steps=2, loss=loss)
    events.emit("verdict", verdict="inconclusive", summary="tuned and base answer alike on 3 held-out examples",
                n=3, contenders={"base": {"bleu": 10.5, "chrf": 30.25, "rougeL": 20.0},
                                 "tuned": {"bleu": 11.0, "chrf": 31.5, "rougeL": 21.0}})
    events.emit("done", step=2)
    return project


@pytest.fixture(scope="module")
def q8(project):
    t0 = time.monotonic()
    res = tuitune(project, "export-model", RUN_ID, "--format", "gguf", "--quant", "q8_0", "--max-new-tokens", "32",
                  "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    return {"result": json.loads(res.stdout.strip().splitlines()[-1]), "seconds": time.monotonic() - t0,
            "stderr": res.stderr}


def test_q8_0_gguf_is_written_merged_first_and_verified(project, q8):
    r = q8["result"]
    gguf = Path(r["gguf"])
    folder = project / "exports" / "models" / f"{RUN_ID}-q8_0"
    assert gguf == folder / f"{RUN_ID}-q8_0.gguf" and gguf.is_file() and gguf.stat().st_size > 100 * 2**20
    assert sorted(p.name for p in folder.iterdir()) == sorted([gguf.name, "Modelfile"])  # no partial files left
    # the run had only an adapter: merged first, like `tuitune merge`; then llama.cpp's converter ran
    assert [s["step"] for s in r["steps"]] == ["merge", "convert"]
    assert (project / "runs" / RUN_ID / "merged" / "config.json").is_file()
    argv = r["steps"][1]["argv"]
    assert argv[1].endswith("convert_hf_to_gguf.py") and argv[argv.index("--outtype") + 1] == "q8_0"
    v = r["verification"]
    assert v["prompts"] == v["n"] == 3 and v["source"] == "held-out records"
    assert v["non_empty"] == 3 and all(a["gguf"].strip() and a["merged"].strip() for a in v["answers"])
    assert 0 <= v["identical"] <= 3 and v["share_identical"] == v["identical"] / 3
    assert (v["first_difference"] is None) == (v["identical"] == 3)
    assert "greedy answers identical to the merged model's" in v["summary"]
    print(f"q8_0 export {q8['seconds']:.1f}s: {v['summary']}")


def test_the_file_is_a_real_q8_0_gguf_with_the_chat_template(project, q8):
    import gguf
    from transformers import AutoTokenizer

    reader = gguf.GGUFReader(q8["result"]["gguf"])
    fields = {name: f.contents() for name, f in reader.fields.items()
              if name in ("general.architecture", "general.file_type", "tokenizer.chat_template",
                          "tokenizer.ggml.eos_token_id", "tokenizer.ggml.add_bos_token")}
    merged = project / "runs" / RUN_ID / "merged"
    tok = AutoTokenizer.from_pretrained(merged)
    assert fields["general.architecture"] == "llama"
    assert fields["general.file_type"] == gguf.LlamaFileType.MOSTLY_Q8_0
    assert fields["tokenizer.chat_template"] == tok.chat_template
    assert fields["tokenizer.ggml.eos_token_id"] == tok.eos_token_id
    assert fields["tokenizer.ggml.add_bos_token"] is False  # the template starts with <|im_start|> itself


def test_modelfile_holds_from_template_stops_and_system(project, q8):
    from transformers import AutoTokenizer

    from tuitune.core.export_model.chat_format import derive, go_template

    r = q8["result"]
    text = Path(r["modelfile"]).read_text(encoding="utf-8")
    directives = {}
    directive = re.compile(r'^(FROM|TEMPLATE|SYSTEM|PARAMETER) (?:"""(.*?)"""|([^\n]*))$', re.DOTALL | re.MULTILINE)
    for m in directive.finditer(text):
        directives.setdefault(m.group(1), []).append(m.group(2) if m.group(2) is not None else m.group(3))
    assert directives["FROM"] == [f"./{Path(r['gguf']).name}"]
    assert (Path(r["modelfile"]).parent / directives["FROM"][0]).is_file()
    template = directives["TEMPLATE"][0]
    tok = AutoTokenizer.from_pretrained(project / "runs" / RUN_ID / "merged")
    assert template == go_template(derive(tok.chat_template, bos_token=tok.bos_token, eos_tokens=[tok.eos_token]))
    assert "<|im_start|>user\n{{ $m.Content }}<|im_end|>" in template and "{{ range $i, $m := .Messages }}" in template
    assert directives["PARAMETER"] == ['stop "<|im_end|>"']
    assert directives["SYSTEM"] == [SYSTEM]
    assert r["template"] == "chatml" and r["template_note"] == "" and r["stops"] == ["<|im_end|>"]
    assert r["ollama_create"] == f"ollama create identity-bot -f {r['modelfile']}"


def test_bf16_gguf_answers_exactly_like_the_merged_model(project, q8, embedded_model):
    """bf16 holds the merged bf16 weights unchanged, so greedy answers must be identical (q8_0 may drift)."""
    res = tuitune(project, "export-model", RUN_ID, "--quant", "bf16", "--verify", "2", "--max-new-tokens", "24")
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout
    assert f"{RUN_ID}-bf16.gguf" in out and "(TEMPLATE from the chatml chat template; stops: <|im_end|>)" in out
    assert "2/2 greedy answers identical to the merged model's" in out, out
    assert f"ollama create identity-bot -f {project}/exports/models/{RUN_ID}-bf16/Modelfile" in out
    # the file holds the tuned weights bit for bit (read with PyPI's gguf reader, not transformers), not the base's
    import gguf
    import numpy as np
    from safetensors import safe_open

    reader = gguf.GGUFReader(project / "exports" / "models" / f"{RUN_ID}-bf16" / f"{RUN_ID}-bf16.gguf")
    v0 = next(t for t in reader.tensors if t.name == "blk.0.attn_v.weight")  # v_proj: LoRA-tuned, not permuted
    in_file = (v0.data.view(np.uint16).astype(np.uint32) << 16).view(np.float32)

    def v_proj(folder: Path):
        with safe_open(folder / "model.safetensors", "pt") as f:
            return f.get_tensor("model.layers.0.self_attn.v_proj.weight").float().numpy()

    assert np.array_equal(in_file, v_proj(project / "runs" / RUN_ID / "merged"))
    assert not np.array_equal(in_file, v_proj(embedded_model))
    again = tuitune(project, "export-model", RUN_ID, "--quant", "bf16")
    assert again.returncode == 2 and "already exists" in again.stderr and "--force" in again.stderr


def test_hf_folder_with_model_card(project, q8):
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    res = tuitune(project, "export-model", RUN_ID, "--format", "hf", "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    r = json.loads(res.stdout.strip().splitlines()[-1])
    folder = Path(r["folder"])
    assert folder == project / "exports" / "models" / f"{RUN_ID}-hf"
    names = set(r["files"])
    assert {"README.md", "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json"} <= names
    assert not [n for n in names if re.search(r"optimizer|scheduler|trainer_state|checkpoint|rng_state|\.bin$", n)]
    assert not [p for p in folder.parent.iterdir() if p.name.endswith(".partial")]
    tok = AutoTokenizer.from_pretrained(folder)
    assert "<|im_start|>" in tok.chat_template
    assert AutoConfig.from_pretrained(folder).model_type == "llama"
    assert GenerationConfig.from_pretrained(folder).eos_token_id == tok.eos_token_id
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\nlibrary_name: transformers\n")
    assert "# Identity bot" in card and "**smollm2-135m-instruct**" in card and "by **lora**" in card
    assert "lora adapter, r 8, alpha 16" in card and "data: 8 records, 3 of them held out" in card
    assert "**Verdict:** tuned and base answer alike on 3 held-out examples" in card
    assert "| tuned (this model) | 11.00 | 31.50 | 21.00 |" in card and SYSTEM in card
    assert tuitune(project, "export-model", RUN_ID, "--format", "hf").returncode == 2
    forced = tuitune(project, "export-model", RUN_ID, "--format", "hf", "--force")
    assert forced.returncode == 0, forced.stderr[-2000:]


def test_a_killed_export_leaves_no_file_that_looks_complete(project, q8, tmp_path):
    import psutil

    from tuitune.core.export_model.export import clean_stale_partials

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "tuitune.cli", "--project", str(project), "export-model", RUN_ID,
                             "--quant", "f16", "--output", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    partial = None
    while time.monotonic() < deadline and partial is None:
        partial = next((p for p in out.glob(".*.partial") if p.stat().st_size > 0), None) if out.is_dir() else None
        time.sleep(0.2)
    assert partial is not None, "the converter never started writing"
    converters = [c for c in psutil.Process(proc.pid).children(recursive=True)]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _gone, alive = psutil.wait_procs(converters, timeout=10)
    assert not alive, "the converter went on writing after the export was killed"
    assert not list(out.glob("*.gguf")) and not (out / "Modelfile").exists()
    assert clean_stale_partials(out, f"{RUN_ID}-f16.gguf") == [partial] and not list(out.iterdir())


@pytest.mark.skipif(not __import__("importlib").util.find_spec("llama_cpp"),
                    reason="llama-cpp-python is not installed (optional: it compiles llama.cpp)")
def test_q4_k_m_through_llama_cpp_quantizer_and_reader(project, q8):
    """With llama-cpp-python: llama.cpp's quantizer writes q4_k_m, and llama.cpp itself answers on the prompt text
    the Modelfile's TEMPLATE produces."""
    import gguf

    res = tuitune(project, "export-model", RUN_ID, "--quant", "q4_k_m", "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    r = json.loads(res.stdout.strip().splitlines()[-1])
    assert [s["step"] for s in r["steps"]] == ["convert", "quantize"]
    assert gguf.GGUFReader(r["gguf"]).fields["general.file_type"].contents() == gguf.LlamaFileType.MOSTLY_Q4_K_M
    assert r["size_bytes"] < Path(q8["result"]["gguf"]).stat().st_size
    lc = r["verification"]["llama_cpp"]
    assert "error" not in lc, lc
    assert lc["n"] == 3 and lc["non_empty"] == 3 and "llama.cpp" in lc["summary"]
    assert not [p for p in Path(r["gguf"]).parent.iterdir() if p.name.endswith(".partial")]
