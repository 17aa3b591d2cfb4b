"""Answers cut at max_tokens in the middle of a multi-byte character (Chinese: 2-3 byte tokens each for the
embedded model) must not end in "�" (issue 21 #16). transformers' streamer flushes the undecodable tail of such a
cut as U+FFFD; the backends hold a trailing U+FFFD back until the next delta and drop it at the end. (vLLM's own
detokenizer already holds incomplete characters back: it never ended an answer with U+FFFD here.)"""

from __future__ import annotations

import pytest

from tuitune.core.serving.backends import _split_partial

PROMPT = "用中文写一首关于春天的诗。"


def test_split_partial_holds_only_a_trailing_replacement_run():
    assert _split_partial("容器\ufffd") == ("容器", "\ufffd")
    assert _split_partial("容器\ufffd\ufffd") == ("容器", "\ufffd\ufffd")
    assert _split_partial("\ufffd组") == ("\ufffd组", "")  # the model's own invalid bytes, kept in the answer
    assert _split_partial("") == ("", "")


@pytest.mark.e2e
async def test_answers_cut_mid_character_end_on_a_whole_character(embedded_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuitune.core.serving.chat import ChatSession, GenParams, TransformersBackend

    tok = AutoTokenizer.from_pretrained(embedded_model)
    model = AutoModelForCausalLM.from_pretrained(embedded_model, dtype=torch.float32).eval()
    ids = tok.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    with torch.no_grad():
        full = model.generate(**ids, max_new_tokens=24, do_sample=False)[0, ids["input_ids"].shape[1]:]
    raw = {n: tok.decode(full[:n], skip_special_tokens=True) for n in range(4, 25)}
    mid_char = [n for n, text in raw.items() if text.endswith("\ufffd")]
    assert mid_char, "no cut fell inside a character: the prompt no longer tests what it should"
    whole = [n for n in raw if n not in mid_char][:2]
    backend = TransformersBackend(embedded_model, "m")
    for n in mid_char[:4] + whole:  # cuts inside a character, and two that end on a whole one
        streamed = "".join([d async for d in ChatSession(backend, params=GenParams(temperature=0, max_tokens=n))
                            .send(PROMPT)])
        assert not streamed.endswith("\ufffd"), (n, streamed)
        assert streamed == raw[n].rstrip("\ufffd"), (n, streamed, raw[n])
