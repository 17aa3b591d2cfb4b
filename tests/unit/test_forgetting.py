"""The forgetting check beside the verdict: scoring general answers and when the tuned model 'lost clearly'."""

from __future__ import annotations

import json

import pytest

from tuitune.core.evaluation import forgetting
from tuitune.core.evaluation.forgetting import GeneralQuestion, compare, is_right, load_questions
from tuitune.core.evaluation.metrics import EvalError


def test_the_shipped_questions_load_and_are_short_and_varied():
    qs = load_questions()
    assert 12 <= len(qs) <= 20
    assert len({q.prompt for q in qs}) == len(qs)
    assert all(len(a.split()) <= 6 for q in qs for a in q.accept)  # short, checkable references
    assert any(q.case for q in qs)  # a formatting instruction where case counts
    assert forgetting.GENERAL_FILE.parent.name == "prompts"  # shipped as package data (pyproject: "prompts/*")


def test_right_means_an_accepted_answer_as_whole_words():
    q42 = GeneralQuestion("What is 17 + 25?", ["42", "forty-two"])
    assert is_right("42", q42) and is_right("The answer is 42.", q42) and is_right("Forty two!", q42)
    assert not is_right("142", q42) and not is_right("4 2", GeneralQuestion("x", ["42"])) and not is_right("", q42)
    paris = GeneralQuestion("Capital of France?", ["Paris"])
    assert is_right("The capital of France is PARIS", paris) and not is_right("Parisian food", paris)
    seq = GeneralQuestion("one to five", ["1, 2, 3, 4, 5"])
    assert is_right("1,2,3,4,5", seq) and is_right("Sure: 1, 2, 3, 4, 5.", seq) and not is_right("1, 2, 4, 5", seq)
    caps = GeneralQuestion("hello in capitals", ["HELLO"], case=True)
    assert is_right("HELLO", caps) and not is_right("Hello", caps)
    assert is_right("H₂O", GeneralQuestion("water?", ["H2O"]))  # NFKC: subscript digits


def _questions(n: int) -> list[GeneralQuestion]:
    return [GeneralQuestion(f"q{i}", [f"a{i}"]) for i in range(n)]


def test_a_tuned_model_that_lost_four_of_eighteen_gets_the_warning():
    qs = _questions(18)
    base = [f"a{i}" for i in range(18)]  # all right
    tuned = ["wrong"] * 4 + base[4:]
    out = compare(qs, base, tuned)
    assert out["text"] == "general answers: tuned 14/18 vs base 18/18 right"
    assert out["vs_base"]["high"] < 0 and "lost general answers (4 fewer of 18 right" in out["warning"]
    assert [it["tuned_right"] for it in out["items"][:5]] == [False] * 4 + [True]


def test_three_lost_or_losses_offset_by_wins_give_no_warning():
    qs = _questions(18)
    base = [f"a{i}" for i in range(18)]
    three = compare(qs, base, ["wrong"] * 3 + base[3:])
    assert three["tuned"] == 15 and three["warning"] == "" and three["vs_base"]["mean"] < 0
    mixed = compare(qs, ["wrong"] * 3 + base[3:], base[:3] + ["wrong"] * 4 + base[7:])  # 3 won, 4 lost
    assert mixed["base"] == 15 and mixed["tuned"] == 14 and mixed["warning"] == ""
    same = compare(qs, base, base)
    assert same["vs_base"] == {"mean": 0.0, "low": 0.0, "high": 0.0} and same["warning"] == ""


def test_a_tuned_model_that_gained_is_never_warned():
    qs = _questions(18)
    base = ["no"] * 18
    out = compare(qs, base, [f"a{i}" for i in range(18)])
    assert out["tuned"] == 18 and out["base"] == 0 and out["warning"] == "" and out["vs_base"]["low"] > 0


def test_mismatched_answers_are_an_error():
    with pytest.raises(EvalError, match="2 base and 1 tuned answers for 2 general questions"):
        compare(_questions(2), ["a", "b"], ["a"])


class Answers:
    """A stand-in model: fixed answers (the real ones are the verdict's LocalModels, e2e)."""

    def __init__(self, name, fn):
        self.name, self.fn, self.calls = name, fn, []

    def answer(self, convs, max_new_tokens):
        self.calls.append((convs, max_new_tokens))
        return [self.fn(c[-1]["content"]) for c in convs]


def test_check_asks_both_models_the_same_questions_without_a_task_system_prompt():
    qs = load_questions()
    right = {q.prompt: q.accept[0] for q in qs}
    base, tuned = Answers("base", lambda p: right[p]), Answers("tuned", lambda p: "I do not know")
    said = []
    out = forgetting.check(base, tuned, progress=said.append)
    assert base.calls[0][0] == tuned.calls[0][0] == [[{"role": "user", "content": q.prompt}] for q in qs]
    assert base.calls[0][1] == forgetting.MAX_NEW_TOKENS == 48
    assert out["base"] == len(qs) and out["tuned"] == 0 and out["warning"]
    assert said == ["general answers: base", "general answers: tuned"]
    assert "items" not in forgetting.event_fields(out) and forgetting.event_fields(out)["text"] == out["text"]


@pytest.mark.parametrize(("line", "message"), [
    ("{not json", "bad.jsonl:2: not JSON"),
    ('{"prompt": "", "accept": ["x"]}', "bad.jsonl:2: field 'prompt'"),
    ('{"prompt": "q", "accept": []}', "bad.jsonl:2: field 'accept'"),
    ('{"prompt": "q", "accept": ["..."]}', "bad.jsonl:2: field 'accept'"),
])
def test_a_bad_question_file_names_file_line_and_field(tmp_path, line, message):
    f = tmp_path / "bad.jsonl"
    f.write_text(json.dumps({"prompt": "ok", "accept": ["y"]}) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(EvalError, match=message):
        load_questions(f)


def test_the_report_carries_the_general_line(tmp_path):
    from tuitune.core.evaluation.contenders import EvalItem
    from tuitune.core.evaluation.report import EvalReport, ModelResult

    general = compare(_questions(18), [f"a{i}" for i in range(18)], ["x"] * 4 + [f"a{i}" for i in range(4, 18)])
    m = {"bleu": 1.0, "chrf": 2.0, "rougeL": 3.0, "per_item": {"chrf": [2.0]}}
    rep = EvalReport("r1", [EvalItem([{"role": "user", "content": "p"}], "ref")],
                     [ModelResult("tuned", "transformers", m, ["out"], 1.0, role="tuned")], general=general)
    assert rep.to_json()["general"]["text"] == "general answers: tuned 14/18 vs base 18/18 right"
    md = rep.to_markdown()
    assert "**General answers:** general answers: tuned 14/18 vs base 18/18 right. Warning: the tuned model" in md
