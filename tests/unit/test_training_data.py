"""Training data: chat-template tokenization with assistant-only loss and EOS, file formats, holdout."""

from __future__ import annotations

import pytest

from tuitune.core.training import data


@pytest.fixture(scope="module")
def tok(embedded_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model)


def _trained_text(tok, ids, labels):
    return tok.decode([i for i, lab in zip(ids, labels) if lab != -100])


def test_loss_only_on_assistant_turns_ending_with_eos(tok):
    msgs = [{"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Bonjour"},
            {"role": "user", "content": "Thanks"}, {"role": "assistant", "content": "Merci à vous"}]
    ids, labels = data.tokenize_chat(tok, msgs)
    assert len(ids) == len(labels)
    assert tok.decode(ids) == tok.apply_chat_template(msgs, tokenize=False)  # the model's own template
    trained = _trained_text(tok, ids, labels)
    assert trained == "Bonjour<|im_end|>Merci à vous<|im_end|>"  # both answers + their end-of-turn, nothing else
    assert ids[max(i for i, lab in enumerate(labels) if lab != -100)] == tok.eos_token_id


def test_eos_appended_when_the_template_does_not_end_turns_with_it(tok):
    template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                "{% if add_generation_prompt %}assistant: {% endif %}")
    msgs = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    ids, labels = data.tokenize_chat(tok, msgs, template)
    assert ids[-1] == tok.eos_token_id and labels[-1] == tok.eos_token_id
    assert "4" in _trained_text(tok, ids, labels) and "2+2" not in _trained_text(tok, ids, labels)


def test_pretrain_blocks(tok):
    recs = [{"text": "The quick brown fox jumps over the lazy dog. " * 40}]
    t = data.tokenize_pretrain(tok, recs, block=64)
    assert len(t.input_ids) >= 5 and all(len(x) <= 64 for x in t.input_ids)
    assert t.labels == t.input_ids


def test_preference_file_from_llamafactory_demo(real_fixtures, tok):
    recs = data.file_records(real_fixtures / "llamafactory_dpo_en_demo.json", "dpo")
    assert len(recs) == 300
    r = recs[0]
    assert r["prompt"][-1]["role"] == "user" and r["chosen"][0]["role"] == "assistant"
    assert r["chosen"][0]["content"] != r["rejected"][0]["content"]
    lengths = data.preference_lengths(tok, recs[:3])
    assert all(n > 10 for n in lengths)
    kto = data.kto_rows(recs[:2])
    assert [row["label"] for row in kto] == [True, False, True, False]


def test_sft_file_and_counts(real_fixtures):
    recs = data.file_records(real_fixtures / "llamafactory_alpaca_en_demo.json", "lora")
    assert recs[0]["messages"][-1]["role"] == "assistant"
    with pytest.raises(data.DataError, match="at least 4"):
        data.check_count(recs[:3], "lora")
    with pytest.raises(data.DataError, match="preference pairs"):
        data.check_count([], "dpo")
    with pytest.raises(data.DataError, match="longer than max_length=100.*#2 \\(150 tokens\\)"):
        data.check_lengths([50, 150, 90], 100)


def test_holdout_is_seeded_and_disjoint():
    recs = [{"i": i} for i in range(20)]
    a, b = data.split_holdout(recs, 3, seed=1)
    assert len(b) == 3 and len(a) == 17 and not ({r["i"] for r in a} & {r["i"] for r in b})
    assert data.split_holdout(recs, 3, seed=1) == (a, b)
