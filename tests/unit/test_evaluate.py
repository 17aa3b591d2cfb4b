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
