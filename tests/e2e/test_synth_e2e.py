"""A real round: the embedded model served by real vLLM (CPU build) is the teacher; `tuitune synth` writes at
least 8 samples from 3 seeds, each parseable with instruction and output filled, stored as pending."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tuitune.cli import main
from tuitune.core.data.formats import read_file
from tuitune.core.data.store import Store
from tuitune.core.synth import rounds

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def test_embedded_teacher_round(vllm_embedded, project, real_fixtures, monkeypatch, tmp_path):
    seeds = tmp_path / "seeds.json"
    seeds.write_text(json.dumps([
        {"instruction": "What should I do if my blood sugar drops below 4 mmol/L?", "input": "",
         "output": "Take 15 g of fast sugar, wait 15 minutes and measure again."},
        {"instruction": "How often should someone with high blood pressure check it at home?", "input": "",
         "output": "Twice in the morning and twice in the evening for a week, then a few times a week."},
        {"instruction": "Can people with asthma exercise?", "input": "",
         "output": "Yes: warm up, carry your reliever inhaler and avoid very cold air."},
    ]))
    monkeypatch.setenv("TUITUNE_E2E_TEACHER_KEY", vllm_embedded.api_key)
    run = CliRunner().invoke
    assert run(main, ["--project", str(project), "init", "--description",
                      "Answer patients' questions about chronic diseases."]).exit_code == 0
    assert run(main, ["--project", str(project), "import", str(seeds), "--as", "seeds"]).exit_code == 0
    r = run(main, ["--project", str(project), "synth", "--n", "8", "--base-url", vllm_embedded.base_url,
                   "--model", vllm_embedded.model_names[0], "--api-key-env", "TUITUNE_E2E_TEACHER_KEY",
                   "--json-schema", "on", "--per-request", "2", "--concurrency", "4", "--max-tokens", "300",
                   "--json"])
    assert r.exit_code == 0, r.output
    final = json.loads([line for line in r.output.splitlines() if line.startswith("{")][-1])
    assert final["status"] == "finished" and final["stored"] == 8
    with Store.open(project) as st:
        made = st.samples(origin="synth")
        assert len(made) == 8
        assert all(s.instruction.strip() and s.output.strip() and s.status == "pending" for s in made)
        assert len({s.prompt_key() for s in made}) == 8
        (rnd,) = rounds.list_rounds(st)
        assert rnd.status == "finished" and rnd.counters["stored"] == 8
        assert "Can people with asthma exercise?" in rnd.prompt or "blood sugar" in rnd.prompt
        assert vllm_embedded.api_key not in json.dumps(rnd.params)  # the key is never stored
        c = rnd.counters
        assert c["returned"] == c["stored"] + c["invalid"] + c["too_short"] + c["too_long"] + c["duplicates"] + \
            c["surplus"]
    # the stored samples export and re-import as valid Alpaca
    for s_id in [s.id for s in made]:
        assert run(main, ["--project", str(project), "review", "--accept", str(s_id)]).exit_code == 0
    out = tmp_path / "out.json"
    assert run(main, ["--project", str(project), "export", "-o", str(out), "--no-seeds"]).exit_code == 0
    assert len(read_file(out, "alpaca").samples) == 8


def test_embedded_teacher_inputs_then_answers(vllm_embedded, store):
    """Second-pass mode on the real model: the teacher writes requests, then answers each one."""
    import asyncio

    from tuitune.core.data.samples import Sample
    from tuitune.core.synth.engine import RoundParams, SynthRound
    from tuitune.core.synth.teacher import Teacher, TeacherConfig

    store.set_task(description="Answer patients' questions about chronic diseases.",
                   system_prompt="You are a careful health assistant.")
    store.add_samples([Sample("Can people with asthma exercise?", "Yes: warm up and carry your inhaler.",
                              origin="seed"),
                       Sample("Is fruit allowed with type 2 diabetes?", "Yes, whole fruit in normal portions.",
                              origin="seed")])
    cfg = TeacherConfig("embedded", vllm_embedded.base_url, vllm_embedded.model_names[0], supports_json_schema=True,
                        timeout=300, api_key=vllm_embedded.api_key)
    params = RoundParams(n=3, mode="inputs", per_request=3, concurrency=4, max_tokens=240, answer_max_tokens=80)
    fin = asyncio.run(SynthRound(store, Teacher(cfg), params).run())
    assert fin.status == "finished", fin.message
    made = store.samples(origin="synth")
    assert len(made) == 3 and all(s.instruction.strip() and s.output.strip() for s in made)
    assert all(s.system == "You are a careful health assistant." for s in made)
    assert fin.counters.answer_requests >= 3
