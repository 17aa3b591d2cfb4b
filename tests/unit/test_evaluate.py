"""Evaluation metrics, language detection, the held-out split of a run, judge parsing and the saved report."""

from __future__ import annotations

import json

import pytest
import sacrebleu

from tuitune.core.evaluation import evaluate as ev


def test_chinese_references_use_the_zh_tokenizer(real_fixtures):
    zh = json.loads((real_fixtures / "llamafactory_alpaca_zh_demo.json").read_text(encoding="utf-8"))[:5]
    en = json.loads((real_fixtures / "llamafactory_alpaca_en_demo.json").read_text(encoding="utf-8"))[:5]
    assert ev.bleu_tokenizer([r["output"] for r in zh]) == "zh"
    assert ev.bleu_tokenizer([r["output"] for r in en]) == "13a"
    # mostly English with a few CJK characters stays 13a
    assert ev.bleu_tokenizer(["Use kubectl apply to deploy (部署) the manifest to the cluster."]) == "13a"


def test_zh_scores_match_sacrebleu_zh_and_differ_from_13a():
    refs = ["今天天气很好，我们去公园散步吧。", "这个模型可以把英文翻译成中文。"]
    hyps = ["今天天气不错，我们去公园散步。", "这个模型能把英文翻译为中文。"]
    m = ev.score(hyps, refs)
    assert m["tokenizer"] == "zh" and "tok:zh" in m["bleu_signature"]
    assert m["bleu"] == round(sacrebleu.corpus_bleu(hyps, [refs], tokenize="zh").score, 2)
    # with 13a a whole Chinese sentence is one "word": BLEU collapses, which is why zh matters
    assert sacrebleu.corpus_bleu(hyps, [refs], tokenize="13a").score < m["bleu"]
    assert 0 < m["rougeL"] < 100  # ROUGE-L sees CJK characters (rouge-score's default tokenizer drops them)
    assert 0 < m["chrf"] < 100


def test_english_scores_perfect_and_zero():
    refs = ["The pod restarts when the liveness probe fails.", "Use a ConfigMap for settings."]
    perfect = ev.score(refs, refs)
    assert perfect["bleu"] == 100 and perfect["rougeL"] == 100 and perfect["chrf"] == 100
    bad = ev.score(["banana", "apple"], refs)
    assert bad["bleu"] < 5 and bad["rougeL"] == 0


def test_score_rejects_mismatched_lengths():
    with pytest.raises(ev.EvalError):
        ev.score(["a"], ["a", "b"])


def _run_folder(tmp_path, real_fixtures, holdout=3):
    from tuitune.core.training.config import TrainConfig

    rows = json.loads((real_fixtures / "llamafactory_alpaca_zh_demo.json").read_text(encoding="utf-8"))[:10]
    records = [{"messages": [{"role": "system", "content": "你是助手。"},
                             {"role": "user", "content": r["instruction"] + ("\n" + r["input"] if r["input"] else "")},
                             {"role": "assistant", "content": r["output"]}]} for r in rows]
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "data.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                                    encoding="utf-8")
    cfg = TrainConfig(data=str(run / "data.jsonl"), holdout=holdout, seed=7)
    (run / "config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
    return run, records


def test_held_out_items_are_the_records_the_worker_held_out(tmp_path, real_fixtures):
    from tuitune.core.training.data import split_holdout

    run, records = _run_folder(tmp_path, real_fixtures)
    items = ev.held_out_items(run)
    _, held = split_holdout(records, 3, 7)
    assert len(items) == 3
    assert [it.reference for it in items] == [h["messages"][-1]["content"] for h in held]
    assert items[0].messages[0]["role"] == "system" and items[0].messages[-1]["role"] == "user"


def test_run_without_holdout_says_what_to_do(tmp_path, real_fixtures):
    run, _ = _run_folder(tmp_path, real_fixtures, holdout=0)
    with pytest.raises(ev.EvalError, match="holdout"):
        ev.held_out_items(run)


def test_report_saved_as_json_and_markdown(tmp_path, real_fixtures):
    run, _ = _run_folder(tmp_path, real_fixtures)
    items = ev.held_out_items(run)
    refs = [it.reference for it in items]
    report = ev.EvalReport("r1", items, tokenizer=ev.bleu_tokenizer(refs))
    report.results.append(ev.ModelResult("tuned", "vllm", ev.score(refs, refs), refs, 1.5))
    report.results.append(ev.ModelResult("base", "vllm", ev.score(["不对"] * 3, refs), ["不对"] * 3, 1.0,
                                         judge={"mean": 1.5}))
    jpath, mpath = ev.save_report(report, run)
    data = json.loads(jpath.read_text(encoding="utf-8"))
    assert data["tokenizer"] == "zh" and data["n"] == 3
    assert data["models"]["tuned"]["metrics"]["bleu"] == 100
    assert data["items"][0]["outputs"]["base"] == "不对"
    md = mpath.read_text(encoding="utf-8")
    assert "| tuned | vllm | 100.00 |" in md and "judge (1-5)" in md and "| base |" in md
    assert ev.load_report(run)["run_id"] == "r1"


@pytest.mark.parametrize(("reply", "expected"), [
    ('{"score": 4, "reason": "minor slip"}', 4),
    ('Sure! {"score": "5", "reason": "good"} done', 5),
    ("score: 2 because it is off-topic", 2),
    ('{"score": 9}', None),
    ("I cannot grade this.", None),
])
def test_parse_judgement(reply, expected):
    assert ev.parse_judgement(reply)[0] == expected


def test_judge_prompt_has_the_rubric_and_the_texts():
    item = ev.EvalItem([{"role": "user", "content": "把 hello 翻译成中文"}], "你好")
    text = ev.render_judge(item, "哈喽", task="EN->ZH translation")
    assert "把 hello 翻译成中文" in text and "你好" in text and "哈喽" in text and "EN->ZH" in text
    assert '"score"' in text and "5 =" in text and "1 =" in text


def test_a_project_can_override_the_judge_rubric(tmp_path):
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "judge.md").write_text("House rubric. Answer: {{ answer }}", encoding="utf-8")
    item = ev.EvalItem([{"role": "user", "content": "q"}], "r")
    assert ev.render_judge(item, "A1", project=tmp_path).startswith("House rubric. Answer: A1")
    assert "Rubric" in ev.render_judge(item, "A1", project=tmp_path / "elsewhere")


# ---- three contenders, short answers, the held-out split, presets ------------------------------------

def test_exact_and_contains_count_only_short_references():
    refs = ["Paris", "Use a ConfigMap for settings that change between environments and clusters, always, everywhere and for everyone."]
    m = ev.score(["paris.", "Use a ConfigMap for settings that change between environments and clusters, always, everywhere and for everyone."], refs)
    assert m["short_n"] == 1 and m["exact"] == 100 and m["contains"] == 100
    m = ev.score(["The capital is Paris!", "x"], refs)
    assert m["exact"] == 0 and m["contains"] == 100
    assert ev.score(["巴黎。"], ["巴黎"])["exact"] == 100  # CJK characters count as tokens; punctuation is dropped
    assert ev.score(["no"], ["a long reference " * 10])["exact"] is None


def _rec(q: str, a: str, system: str = "") -> dict:
    msgs = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return {"messages": msgs}


def test_few_shot_examples_fit_the_context_and_sit_after_the_system_prompt():
    from tuitune.core.evaluation.contenders import pick_shots, with_shots

    train = [_rec(f"question number {i}", "answer " * 20, "sys") for i in range(30)]
    items = ev.items_from_records([_rec("held-out question", "ref", "sys")])
    tokens = ev.approx_tokens
    shots = pick_shots(train, items, seed=1, count_tokens=tokens, context=4096, answer_budget=100)
    assert len(shots) == 5  # MAX_SHOTS
    assert pick_shots(train, items, seed=1, count_tokens=tokens, context=4096, answer_budget=100) == shots
    tight = pick_shots(train, items, seed=1, count_tokens=tokens, context=200, answer_budget=100)
    assert 0 < len(tight) < 5
    assert not pick_shots(train, items, seed=1, count_tokens=tokens, context=50, answer_budget=100)
    msgs = with_shots(items[0], shots)
    assert msgs[0] == {"role": "system", "content": "sys"} and msgs[-1]["content"] == "held-out question"
    assert [m["role"] for m in msgs[1:-1]] == ["user", "assistant"] * 5
    assert sum(m["role"] == "system" for m in msgs) == 1


def test_held_out_split_keeps_near_duplicates_of_training_records_out(real_fixtures):
    from tuitune.core.training.data import split_holdout

    rows = json.loads((real_fixtures / "llamafactory_identity.json").read_text(encoding="utf-8"))
    records = [_rec(r["instruction"], r["output"]) for r in rows]
    # add copies of the first 20 records in capitals without the final punctuation (the same prompt after the
    # dedup measure's normalising): each must land on its original's side
    copies = [_rec(r["messages"][0]["content"].upper().rstrip("?？!。."), r["messages"][1]["content"])
              for r in records[:20]]
    train, held = split_holdout(records + copies, 15, seed=3)
    assert len(held) <= 15 and len(train) + len(held) == len(records) + len(copies)
    train_prompts = {r["messages"][0]["content"] for r in train}
    for orig, copy in zip(records[:20], copies):
        a, b = orig["messages"][0]["content"], copy["messages"][0]["content"]
        assert (a in train_prompts) == (b in train_prompts), (a, b)
    assert split_holdout(records + copies, 15, seed=3) == (train, held)


@pytest.mark.parametrize(("n", "method", "held"), [
    (11, "lora", 0), (12, "lora", 3), (39, "lora", 3), (40, "lora", 8), (76, "lora", 8), (91, "lora", 9),
    (500, "lora", 50), (5000, "lora", 200), (100, "pretrain", 0), (100, "dpo", 10)])
def test_holdout_size(n, method, held):
    from tuitune.core.training.presets import holdout_for

    assert holdout_for(n, method) == held


def test_small_data_presets_count_steps_and_scale_the_rate_with_model_size():
    from tuitune.core.training import presets
    from tuitune.core.training.config import TrainConfig

    cpu = presets.Hardware(cuda=False, gpus=0, bf16=False)
    # LLaMA-Factory's identity set as bench/learned.py trains it: 76 short records on the 135M model
    cfg = presets.apply(TrainConfig(), [85] * 76, cpu, model_params=135_000_000)
    n_train = 76 - cfg.holdout
    assert cfg.holdout == 8 and cfg.early_stopping_patience == 3
    assert presets.total_steps(cfg, n_train) >= presets.MIN_STEPS  # was 25 steps (batch 16, 5 epochs)
    assert cfg.batch_size == 8 and cfg.learning_rate == 1e-3
    # the usual LoRA rate at 7B, less above it (at most 2x less); full fine-tuning keeps its own rate
    assert presets.apply(TrainConfig(), [85] * 76, cpu, model_params=7_000_000_000).learning_rate == 2e-4
    assert presets.apply(TrainConfig(), [85] * 76, cpu, model_params=70_000_000_000).learning_rate == 1e-4
    assert presets.apply(TrainConfig(method="full"), [85] * 76, cpu, model_params=135_000_000).learning_rate == 2e-5
    # plenty of data: epochs are not raised, the batch is the token budget's
    big = presets.apply(TrainConfig(), [200] * 5000, cpu, model_params=135_000_000)
    assert big.epochs == 2 and big.batch_size == 16 and big.holdout == 200
    # tiny data: epochs raised for the minimum steps, but capped
    tiny = presets.apply(TrainConfig(), [100] * 6, cpu)
    assert tiny.holdout == 0 and tiny.early_stopping_patience == 0 and tiny.epochs == presets.MAX_EPOCHS


class _Answers:
    """A stand-in model answering from a table (the scoring, few-shot plumbing and verdict are under test;
    tests/e2e/test_learned.py runs the real models)."""

    engine = "table"

    def __init__(self, name, table, default="I do not know."):
        self.name, self.table, self.default, self.seen = name, table, default, []

    def answer(self, conversations, max_new_tokens, limits=None):
        self.seen += conversations
        return [self.table.get(c[-1]["content"], self.default) for c in conversations]


def test_three_way_report_has_contenders_shots_memorisation_and_a_verdict(tmp_path):
    import asyncio

    train = [_rec(f"train question {i}", f"The answer to {i} is {i * 7}.") for i in range(20)]
    held = [_rec(f"held question {i}", f"The answer to {i} is {i * 7}.") for i in range(100, 112)]
    tuned = _Answers("run1", {m["messages"][0]["content"]: m["messages"][1]["content"] for m in train + held})
    base = _Answers("base-model", {})
    items = ev.items_from_records(held)
    contenders, sample = ev.three_way(train, items, base, tuned, seed=3)
    assert [c.role for c in contenders] == ["base", "few_shot", "tuned"] and len(sample) == 12
    report = asyncio.run(ev.evaluate(items, contenders, run_id="run1", train_items=sample))
    data = report.to_json()
    assert set(data["contenders"]) == {"base", "few_shot", "tuned"}
    k = data["few_shot"]["k"]
    assert k == 5 and f"base-model + {k}-shot" in data["models"]
    assert data["contenders"]["tuned"]["chrf"] == 100 and data["contenders"]["tuned"]["train_chrf"] == 100
    assert data["contenders"]["base"]["chrf"] < 30
    assert data["verdict"]["code"] == "tuned_wins" and data["items"][0]["outputs"]["run1"].startswith("The answer")
    few_shot_prompts = [c for c in base.seen if len(c) > 1]
    assert len(few_shot_prompts) == 12 and all(len(c) == 2 * k + 1 for c in few_shot_prompts)
    assert {s["prompt"] for s in data["few_shot"]["examples"]}.isdisjoint({t.prompt for t in sample})
    md = report.to_markdown()
    assert "**Verdict:** tuned beats base and few-shot" in md and "(few-shot)" in md and "chrF on train" in md
