"""Engine parity on made-up answer lists: identical shares, the first divergence (item, character and token
offsets, snippets), and the likely cause decided from evidence (prompt tokens, stops, dtype, lateness); the
`parity` event folded into RunState and read back in words; the worker's default on a CPU."""

from __future__ import annotations

import pytest

from tuitune.core.evaluation.parity import (
    WARN_BELOW,
    EngineAnswers,
    compare,
    compare_pair,
    event_lines,
)
from tuitune.core.evaluation.parity_engines import served_dtype

PROMPT = [1, 2, 3, 4]
ANSWERS = ["A DaemonSet ensures that all Nodes run a copy of a Pod.", "Paris is the capital of France.",
           "I am an assistant made by the author.", "Kubernetes groups containers into Pods."]


def engine(name, answers=ANSWERS, dtype="bf16", stopped=None, prompts=None, **kw):
    n = len(answers)
    return EngineAnswers(name, list(answers), dtype, stopped if stopped is not None else [True] * n,
                         prompts if prompts is not None else [list(PROMPT) for _ in range(n)], **kw)


def test_identical_answers_agree_fully_without_a_cause_or_warning():
    p = compare_pair(engine("transformers"), engine("vllm", [a + "  \n" for a in ANSWERS]))  # ends ignored
    assert (p["identical"], p["n"], p["share"]) == (4, 4, 1.0)
    assert p["first"] is None and p["cause"] is None and p["warning"] is None


def test_first_divergence_names_item_char_and_token_offsets_with_both_snippets():
    other = list(ANSWERS)
    other[1] = "Paris is the capital city of France, and its largest city."
    a, b = engine("transformers"), engine("vllm", other)
    p = compare_pair(a, b, count_tokens=lambda text: len(text.split()))
    f = p["first"]
    assert f["item"] == 1 and f["char"] == len("Paris is the capital ")
    assert f["token"] == 4  # the shared start, counted with the tokenizer given
    assert f["snippets"]["transformers"].endswith("capital of France.")
    assert "capital city of France" in f["snippets"]["vllm"]
    assert p["identical"] == 3 and p["diverged_items"] == [1]
    # both engines' answer tokens, when known, give the token offset directly
    a.answer_ids = [[1], [5, 6, 7, 8], [1], [1]]
    b.answer_ids = [[1], [5, 6, 9], [1], [1]]
    assert compare_pair(a, b)["first"]["token"] == 2


def test_different_prompt_tokens_are_a_template_warning_even_when_answers_agree():
    prompts = [[1, 2, 3, 4], [1, 2, 3, 4], [9, 9, 1, 2, 3, 4], [9, 9, 1, 2, 3, 4]]
    p = compare_pair(engine("transformers"), engine("vllm", prompts=prompts))
    assert p["share"] == 1.0
    assert p["cause"] == "template"
    assert "2 of 4 prompts" in p["evidence"] and "item 2: 4 vs 6 tokens, first different at token 0" in p["evidence"]
    assert p["warning"] and "likely cause: template" in p["warning"] and "chat template" in p["warning"]


def test_template_texts_that_differ_are_evidence_when_no_token_ids_are_known():
    a = engine("transformers", prompts=[None] * 4, template="{{ messages }}")
    b = engine("gguf", prompts=[], template="<|im_start|>{{ messages }}")
    assert compare_pair(a, b)["cause"] == "template"


def test_an_answer_running_on_past_where_the_other_stopped_is_eos():
    longer = [a + " It also restarts them when they fail, and keeps running." for a in ANSWERS[:3]] + ANSWERS[3:]
    a = engine("transformers", stopped=[True] * 4)
    b = engine("vllm", longer, stopped=[False, False, False, True])
    p = compare_pair(a, b)
    assert p["cause"] == "eos" and p["share"] == 0.25
    assert "vllm's answer runs on past where transformers's stopped" in p["evidence"]
    assert "transformers ended 4/4 answers with EOS; vllm ended 1/4" in p["evidence"]
    assert p["warning"] and "stop tokens" in p["warning"]


def test_late_divergences_between_bf16_and_fp32_are_dtype():
    late = [a[:-5] + "XXXXX" for a in ANSWERS[:2]] + ANSWERS[2:]
    p = compare_pair(engine("transformers", dtype="fp32"), engine("vllm", late, dtype="bf16"))
    assert p["cause"] == "dtype" and "transformers computes in fp32, vllm in bf16" in p["evidence"]
    assert p["share"] == 0.5 < WARN_BELOW and "precision" in p["warning"]


def test_late_divergences_in_the_same_dtype_are_numerics_and_early_ones_unknown():
    late = [a[:-5] + "XXXXX" for a in ANSWERS[:2]] + ANSWERS[2:]
    assert compare_pair(engine("a"), engine("b", late))["cause"] == "numerics"
    early = ["Totally different." for _ in ANSWERS]
    p = compare_pair(engine("a", dtype="fp32"), engine("b", early, dtype="bf16"))
    assert p["cause"] == "unknown" and "more than precision differs" in p["evidence"]
    assert p["share"] == 0.0 and p["warning"]


def test_a_small_disagreement_is_numbers_not_a_warning():
    answers = ANSWERS * 2
    other = list(answers)
    other[5] = other[5][:-5] + "XXXXX"
    p = compare_pair(engine("a", answers), engine("b", other))
    assert p["share"] == 0.875 and p["warning"] is None and p["cause"] == "numerics"


def test_any_number_of_engines_gives_every_pair_in_order():
    out = compare([engine("transformers", dtype="fp32"), engine("vllm"), engine("gguf", dtype="q8_0")])
    assert [p["engines"] for p in out["pairs"]] == [["transformers", "vllm"], ["transformers", "gguf"],
                                                    ["vllm", "gguf"]]
    assert [e["dtype"] for e in out["engines"]] == ["fp32", "bf16", "q8_0"]
    assert compare([engine("transformers")])["pairs"] == []


def test_answer_lists_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="the same prompts"):
        compare_pair(engine("a"), engine("b", ANSWERS[:2]))


def test_served_dtype_reads_vllms_start_up_log():
    log = "INFO ... Initializing a V1 LLM engine (v0.32.0) with config: model='/m', dtype=torch.bfloat16, max_seq_len"
    assert served_dtype(log) == "bf16"
    assert served_dtype("nothing here") == ""


def test_the_parity_event_reaches_run_state_and_reads_as_words(tmp_path):
    from tuitune.core.training.events import EventWriter
    from tuitune.core.training.run_dir import RunDir, read_all

    other = list(ANSWERS)
    other[2] = "Something else entirely."
    ev = compare([engine("transformers", dtype="fp32"), engine("vllm", other, prompts=[[7]] * 4)])
    ev["left_out"] = [{"engine": "gguf", "why": "no GGUF exported for this run yet"}]
    w = EventWriter(tmp_path)
    w.emit("started", pid=1)
    w.emit("parity", **ev)
    state = read_all(RunDir(tmp_path).events)
    assert state.parity["pairs"][0]["share"] == 0.75 and state.parity["pairs"][0]["cause"] == "template"
    lines = event_lines(state.parity)
    words = ("engine parity: transformers (fp32) vs vllm (bf16): 3/4 identical (first divergence: item 2, char 0), "
             "likely cause: template")
    assert lines[0] == ("info", words)
    assert [level for level, _ in lines] == ["info", "warning", "note"]
    assert "gguf" in lines[-1][1]
    assert event_lines({"skipped": "off on a CPU"}) == [("note", "engine parity: off on a CPU")]


def test_the_worker_leaves_parity_off_on_a_cpu_and_says_so(tmp_path):
    from tuitune.core.evaluation.after_training import parity_default, parity_step
    from tuitune.core.training.config import TrainConfig
    from tuitune.core.training.events import EventWriter
    from tuitune.core.training.run_dir import RunDir, read_all

    on, why = parity_default(cuda=False)
    assert not on and "tuitune runs parity RUN" in why
    run = RunDir(tmp_path / "r1")
    run.path.mkdir()
    parity_step(TrainConfig(), run, EventWriter(run.path), cuda=False)
    first = read_all(run.events).parity
    assert "off on a CPU" in first["skipped"] and "tuitune runs parity r1" in first["skipped"]
    assert first["pairs"] == [] and first["engines"] == []
    parity_step(TrainConfig(parity=False), run, EventWriter(run.path), cuda=True)
    assert read_all(run.events).parity["skipped"] == "off (parity: false)"


def _report(run_id, engine, dtype, out, items, source="eval", budget=""):
    from tuitune.core.evaluation.metrics import score
    from tuitune.core.evaluation.report import EvalReport, ModelResult

    refs = [it.reference for it in items]
    r = EvalReport(run_id, items, tokenizer="13a", source=source, budget=budget)
    r.results.append(ModelResult(run_id, engine, score([out] * len(items), refs), [out] * len(items), 1.0,
                                 role="tuned", dtype=dtype))
    return r


def test_an_eval_on_another_engine_says_the_verdicts_number_and_that_the_gap_is_the_engines(tmp_path):
    """Issue 21 item 9: the card (transformers) said tuned chrF 14.9, /eval (vLLM) 21.54, and neither said why."""
    from tuitune.core.evaluation.contenders import EvalItem
    from tuitune.core.evaluation.report import load_report, save_report
    from tuitune.core.training.events import EventWriter

    run = tmp_path / "r1"
    run.mkdir()
    items = [EvalItem([{"role": "user", "content": f"Translate sentence {i}."}], f"这是第{i}句话。") for i in range(6)]
    verdict_report = _report("r1", "transformers", "fp32", "这是一句话", items, source="verdict")
    save_report(verdict_report, run)
    tuned = verdict_report.by_role()["tuned"]
    w = EventWriter(run)
    w.emit("verdict", verdict="inconclusive", summary="...", engine="transformers", precision="fp32",
           max_new_tokens=48, contenders={"tuned": tuned.summary()})
    assert load_report(run, "verdict.json")["source"] == "verdict"

    later = _report("r1", "vllm", "bf16", "这是第一句话。", items, budget="max_tokens 256")
    save_report(later, run)
    note = later.engine_note
    assert f"tuned chrF {tuned.metrics['chrf']:.2f} with transformers (fp32)" in note
    assert f"this evaluation {later.results[0].metrics['chrf']:.2f} with vllm (bf16), max_tokens 256" in note
    assert "on the same held-out items" in note and "the gap is engine-level" in note
    assert "tuitune runs parity r1" in note  # no parity numbers yet: how to get them
    md = (run / "eval" / "report.md").read_text(encoding="utf-8")
    assert "**Engines:**" in md and "vllm (bf16)" in md and "Greedy answers by vllm (bf16), max_tokens 256." in md
    assert load_report(run, "verdict.json")["models"]["r1"]["engine"] == "transformers"  # the verdict's kept

    # with the parity check's numbers in the events, the note points at them
    w.emit("parity", **compare([engine("transformers", dtype="fp32"), engine("vllm", ANSWERS[:3] + ["other"])]))
    again = _report("r1", "vllm", "bf16", "这是第一句话。", items)
    save_report(again, run)
    assert "engine parity: transformers (fp32) vs vllm (bf16): 3/4 identical" in again.engine_note


def test_an_eval_on_the_verdicts_own_engine_does_not_blame_the_engines(tmp_path):
    from tuitune.core.evaluation.contenders import EvalItem
    from tuitune.core.evaluation.report import save_report
    from tuitune.core.training.events import EventWriter

    run = tmp_path / "r2"
    run.mkdir()
    items = [EvalItem([{"role": "user", "content": f"q{i}"}], f"answer {i}") for i in range(5)]
    first = _report("r2", "transformers", "fp32", "answer", items, source="verdict")
    save_report(first, run)
    EventWriter(run).emit("verdict", verdict="no_gain", engine="transformers", precision="fp32",
                          contenders={"tuned": first.by_role()["tuned"].summary()})
    later = _report("r2", "transformers", "fp32", "answer 1", items)
    save_report(later, run)
    assert "Same engine and precision" in later.engine_note and "engine-level" not in later.engine_note
    assert first.engine_note == ""  # the verdict's own report is not set beside itself


def test_preference_records_give_their_prompt_and_chosen_answer_as_parity_prompts():
    from tuitune.core.evaluation.parity import _items

    records = [{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}],
                "chosen": [{"role": "assistant", "content": "Hello."}],
                "rejected": [{"role": "assistant", "content": "Go away."}]},
               {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}]
    items = _items(records)
    assert [(it.messages[-1]["content"], it.reference) for it in items] == [("2+2?", "4"), ("Hi?", "Hello.")]


def test_the_exported_gguf_is_found_where_export_model_writes_it(tmp_path):
    import os
    import time

    from tuitune.core.evaluation.parity import exported_gguf

    run = tmp_path / "proj" / "runs" / "r1"
    run.mkdir(parents=True)
    assert exported_gguf(run) is None
    old = tmp_path / "proj" / "exports" / "models" / "r1-f16" / "r1-f16.gguf"
    new = tmp_path / "proj" / "exports" / "models" / "r1-q8_0" / "r1-q8_0.gguf"
    other = tmp_path / "proj" / "exports" / "models" / "r10-q8_0" / "r10-q8_0.gguf"  # another run's
    for i, p in enumerate((old, new, other)):
        p.parent.mkdir(parents=True)
        p.write_bytes(b"GGUF")
        os.utime(p, (time.time() + i, time.time() + i))
    assert exported_gguf(run) == new


def test_parity_on_that_cannot_run_is_an_event_not_a_failed_run(tmp_path):
    from tuitune.core.evaluation.after_training import parity_step
    from tuitune.core.training.config import TrainConfig
    from tuitune.core.training.events import EventWriter
    from tuitune.core.training.run_dir import RunDir, read_all

    run = RunDir(tmp_path / "r3")
    run.path.mkdir()
    parity_step(TrainConfig(parity=True), run, EventWriter(run.path), cuda=False)  # no merged/ to compare
    ev = read_all(run.events).parity
    assert "has no merged model" in ev["skipped"] and "tuitune merge r3" in ev["skipped"]
