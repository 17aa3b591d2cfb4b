"""e2e: the engine parity check on a run folder whose merged/ is a really tuned model (the `tiny_tuned` fixture's
merged folder): the worker's post-train step with `parity: true` answers 3 held-out prompts greedily with
transformers and with a real vLLM server on merged/ (one start for this module), records a `parity` event that
`tuitune runs --json` and the run's TUI card show; then a copy of merged/ whose chat template was swapped is
flagged with the template cause against the same vLLM answers (no second server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tuitune.core.evaluation.parity import (
    PARITY_FILE,
    EngineAnswers,
    compare,
    load_parity,
    transformers_answers,
)
from tuitune.core.training.config import TrainConfig
from tuitune.core.training.events import EventWriter
from tuitune.core.training.run_dir import RunDir, read_all

pytestmark = pytest.mark.e2e

RUN = "20260101-000000-lora-prty"
WRONG_TEMPLATE = ("{% for m in messages %}[INST] {{ m['role'] }}: {{ m['content'] }} [/INST]\n{% endfor %}"
                  "{% if add_generation_prompt %}[ANSWER]{% endif %}")


def short_records(real_fixtures, n: int) -> list[dict]:
    rows = json.loads((real_fixtures / "llamafactory_alpaca_en_demo.json").read_text(encoding="utf-8"))
    rows = sorted(rows, key=lambda r: len(r["instruction"]) + len(r.get("input", "")) + len(r["output"]))[:n]
    return [{"messages": [{"role": "system", "content": "Answer briefly."},
                          {"role": "user", "content": (r["instruction"] + "\n" + r.get("input", "")).strip()},
                          {"role": "assistant", "content": r["output"]}]} for r in rows]


@pytest.fixture(scope="module")
def parity_run(tmp_path_factory, real_fixtures, embedded_model, tiny_tuned):
    from tuitune.core.evaluation.after_training import parity_step

    project = tmp_path_factory.mktemp("parity")
    run = RunDir.of(project, RUN)
    run.path.mkdir(parents=True)
    run.data.write_text("".join(json.dumps(r) + "\n" for r in short_records(real_fixtures, 12)), encoding="utf-8")
    cfg = TrainConfig(base_path=str(embedded_model), holdout=4, max_steps=2, check_max_new_tokens=24, parity=True,
                      parity_prompts=3, data=str(run.data))
    run.config.write_text(cfg.to_yaml(), encoding="utf-8")
    run.merged.symlink_to(tiny_tuned["merged"], target_is_directory=True)
    events = EventWriter(run.path)
    events.emit("started", pid=os.getpid(), method="lora", base="smollm2", device="cpu", gpus=0, checkpoint=None)
    events.emit("step", step=2, max_steps=2, loss=1.0, tokens_per_second=10.0, eta_seconds=0)
    parity_step(cfg, run, events, cuda=False)  # the worker's post-train step, parity on
    events.emit("done", step=2, metrics={}, adapter=None, merged=str(run.merged))
    return {"project": project, "run": run}


def test_transformers_and_vllm_answer_the_same_held_out_prompts_and_are_compared(parity_run):
    run = parity_run["run"]
    state = read_all(run.events)
    ev = state.parity
    assert ev is not None and "skipped" not in ev, ev
    assert [e["engine"] for e in ev["engines"]] == ["transformers", "vllm"], ev.get("left_out")
    assert all(e["dtype"] in ("bf16", "fp32") and e["n"] == 3 for e in ev["engines"])
    assert ev["n"] == 3 and ev["prompts_from"] == "held-out" and ev["left_out"] == []
    (pair,) = ev["pairs"]
    assert pair["engines"] == ["transformers", "vllm"] and pair["n"] == 3
    assert pair["share"] == round(pair["identical"] / 3, 3)
    # both engines fed the model the same prompt tokens (vLLM reports its own): no template cause
    saved = load_parity(run.path)
    tf, vl = (EngineAnswers.from_json(a) for a in saved["answers"])
    assert tf.prompt_ids == vl.prompt_ids and all(vl.prompt_ids) and pair["cause"] != "template"
    if pair["first"] is not None:  # where they part, both snippets and the offsets are there
        f = pair["first"]
        assert set(f["snippets"]) == {"transformers", "vllm"} and f["char"] >= 0 and f["token"] is not None
    phases = [e.get("message", "") for e in run.follower().poll(final=True) if e["event"] == "phase"]
    assert any("starting vLLM" in m for m in phases)


def test_runs_json_and_the_runs_card_carry_the_parity_numbers(parity_run, home):
    project, run = parity_run["project"], parity_run["run"]
    env = {**os.environ, "TUITUNE_HOME": str(home)}
    out = subprocess.run([sys.executable, "-m", "tuitune.cli", "--project", str(project), "runs", "--json"],
                         capture_output=True, text=True, timeout=120, check=False, env=env)
    assert out.returncode == 0, out.stderr
    (info,) = json.loads(out.stdout)
    parity = info.get("parity")
    assert parity, f"runs --json has no parity: {sorted(info)}"
    assert parity["pairs"][0]["share"] == read_all(run.events).parity["pairs"][0]["share"]


async def test_the_runs_card_shows_the_parity_line(parity_run, home):
    from textual.widgets import Static

    from tuitune.settings import load_settings
    from tuitune.tui.app import make_app

    app = make_app(load_settings(project=parity_run["project"], home=home))
    async with app.run_test(size=(140, 40)) as pilot:
        app.screen.follow_run(RUN)
        await pilot.pause(1.5)
        text = str(app.screen.query_one(f"#run-{RUN}").query_one("#parity", Static).render())
    pair = read_all(parity_run["run"].events).parity["pairs"][0]
    assert f"{pair['identical']}/3 identical" in text and "transformers (" in text and "vllm (" in text


def test_a_swapped_chat_template_for_one_engine_is_flagged_as_the_template(parity_run, tmp_path):
    from transformers import AutoTokenizer

    merged = parity_run["run"].merged
    wrong = tmp_path / "served-copy"
    wrong.mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        (wrong / name).symlink_to(merged / name)
    tok = AutoTokenizer.from_pretrained(merged)
    tok.chat_template = WRONG_TEMPLATE
    tok.save_pretrained(wrong)
    saved = load_parity(parity_run["run"].path)
    vllm = next(EngineAnswers.from_json(a) for a in saved["answers"] if a["engine"] == "vllm")
    swapped = transformers_answers(wrong, saved["prompts"], saved["limits"])
    out = compare([swapped, vllm])
    (pair,) = out["pairs"]
    assert pair["cause"] == "template", pair
    assert "different prompt tokens on 3 of 3 prompts" in pair["evidence"]
    assert out["warnings"] and "likely cause: template" in out["warnings"][0]
    assert (parity_run["run"].path / PARITY_FILE).is_file()
