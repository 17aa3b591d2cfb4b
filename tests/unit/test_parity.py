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
    served_dtype,
)

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
    from tuitune.core.training.config import TrainConfig
    from tuitune.core.training.events import EventWriter
    from tuitune.core.training.run_dir import RunDir, read_all
    from tuitune.core.training.worker import _parity, parity_default

    on, why = parity_default(cuda=False)
    assert not on and "tuitune runs parity RUN" in why
    run = RunDir(tmp_path / "r1")
    run.path.mkdir()
    _parity(TrainConfig(), run, EventWriter(run.path), cuda=False)
    first = read_all(run.events).parity
    assert "off on a CPU" in first["skipped"] and "tuitune runs parity r1" in first["skipped"]
    assert first["pairs"] == [] and first["engines"] == []
    _parity(TrainConfig(parity=False), run, EventWriter(run.path), cuda=True)
    assert read_all(run.events).parity["skipped"] == "off (parity: false)"
