"""bench/learned.py --set k8s: the K8s pairs become the seed job's translation records, a bad line is named by
file and line, every contender's EOS count is its own (base and few-shot share one model), and the side-by-side
table has a block per base model."""

from __future__ import annotations

import json
from pathlib import Path

import bench_scripts
import pytest

REAL_K8S = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real" / "k8s_docs_en_zh.jsonl"


@pytest.fixture(scope="module")
def learned():
    return bench_scripts.load("learned")


def test_pairs_become_translation_records_with_the_seed_system_prompt(learned, tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text(json.dumps({"en": "A Pod is the smallest unit.", "zh": "Pod 是最小的单元。", "source": "x.md"}) + "\n\n",
                 encoding="utf-8")
    [row] = learned.k8s_rows(f)
    assert row["instruction"] == "Translate the following English text to Chinese"
    assert (row["input"], row["output"]) == ("A Pod is the smallest unit.", "Pod 是最小的单元。")
    msgs = learned.sample_of(row).to_messages()
    assert msgs[0] == {"role": "system", "content": learned.K8S_SYSTEM}
    assert msgs[1]["content"] == "Translate the following English text to Chinese\nA Pod is the smallest unit."


@pytest.mark.parametrize(("line", "words"), [("{not json", "not JSON"), (json.dumps({"en": "x"}), "field 'zh'"),
                                             (json.dumps({"en": " ", "zh": "y"}), "field 'en'")])
def test_a_bad_line_is_named(learned, tmp_path, line, words):
    f = tmp_path / "pairs.jsonl"
    f.write_text(json.dumps({"en": "a", "zh": "b"}) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(learned.BadData, match=rf"pairs.jsonl:2: .*{words}"):
        learned.k8s_rows(f)


@pytest.mark.skipif(not REAL_K8S.exists(), reason="../shared fixtures not beside this checkout")
def test_the_real_pairs_all_import(learned):
    rows = learned.k8s_rows(REAL_K8S)
    assert len(rows) == 314 and all(r["output"] and r["input"] for r in rows)


class _Model:
    engine, bf16, name = "transformers", False, "m"

    def __init__(self, ends):
        self.ends, self.stopped = ends, []

    def answer(self, conversations, max_new_tokens, limits=None):
        self.stopped = [self.ends] * len(conversations)
        return ["x"] * len(conversations)


def test_each_contender_keeps_its_own_eos_record(learned):
    shared = _Model(ends=True)
    base, few = learned.Recording(shared), learned.Recording(shared)
    base.answer([[]] * 3, 8)
    shared.ends = False
    few.answer([[]] * 3, 8)
    base.answer([[]] * 2, 8)  # the training sample: a later call, not the held-out count
    assert [sum(c) for c in base.calls] == [3, 0] and [sum(c) for c in few.calls] == [0]
    assert base.engine == "transformers" and base.bf16 is False  # what evaluate() reads passes through


def test_comparison_has_a_block_per_base(learned):
    def res(base, chrf):
        return {"base": base, "n": 10, "verdict": "better", "stop_check": "3/3", "wall_seconds": 600,
                "bench_seconds": 120, "eos": {"base": 1, "few_shot": 2, "tuned": 10},
                "metrics": {r: {"bleu": 1.0, "chrf": chrf, "rougeL": 3.0} for r in ("base", "few_shot", "tuned")}}

    table = learned.comparison([res("smollm2-135m-instruct", 5.0), res("gemma3-270m", 25.0),
                                {"base": "broken", "status": "failed"}])
    lines = table.splitlines()
    assert len(lines) == 1 + 3 + 3 + 1
    assert lines[1].startswith("smollm2-135m-instruct") and lines[4].startswith("gemma3-270m")
    assert "10/10" in lines[3] and "25.0" in lines[6] and "10.0 min import -> judged" in lines[3]
    assert "run ended failed" in lines[7]
