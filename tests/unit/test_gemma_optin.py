"""Gemma 3 270M as an opt-in base, without preparing it: the chat template it gets, the license gate, how it is
listed and located before it is prepared (the preparation itself: tests/e2e/test_gemma_base.py)."""

from __future__ import annotations

import jinja2
import pytest

from tuitune.core import gemma
from tuitune.core.models import ModelError, list_models, locate, register


def render(messages, add_generation_prompt=False):
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)  # as transformers renders chat templates
    return env.from_string(gemma.CHAT_TEMPLATE).render(messages=messages, bos_token="<bos>",
                                                       add_generation_prompt=add_generation_prompt)


CONV = [{"role": "system", "content": "You translate."}, {"role": "user", "content": "A Pod"},
        {"role": "assistant", "content": "Pod"}, {"role": "user", "content": "A node"},
        {"role": "assistant", "content": "节点"}]


def test_turn_format_with_the_system_prompt_in_the_first_user_turn():
    assert render(CONV) == ("<bos><start_of_turn>user\nYou translate.\n\nA Pod<end_of_turn>\n"
                            "<start_of_turn>model\nPod<end_of_turn>\n"
                            "<start_of_turn>user\nA node<end_of_turn>\n<start_of_turn>model\n节点<end_of_turn>\n")
    assert render(CONV[1:2], add_generation_prompt=True) == "<bos><start_of_turn>user\nA Pod<end_of_turn>\n" \
                                                              "<start_of_turn>model\n"


def test_renders_incrementally_so_each_answer_can_be_found_for_the_loss():
    """What tokenize_chat needs: the prompt up to each answer (with the generation prompt) and the conversation
    through it are prefixes of the whole rendering, and the answer ends with <end_of_turn>."""
    whole = render(CONV)
    for i, m in enumerate(CONV):
        if m["role"] != "assistant":
            continue
        before, through = render(CONV[:i], add_generation_prompt=True), render(CONV[: i + 1])
        assert whole.startswith(before) and whole.startswith(through)
        assert through[len(before):] == m["content"] + "<end_of_turn>\n"


def test_not_prepared_without_the_license_and_never_implicitly(tmp_path):
    with pytest.raises(gemma.LicenseNotAccepted, match="Gemma Terms of Use") as e:
        gemma.prepare(tmp_path)
    assert gemma.TERMS_URL in str(e.value) and "--accept-license" in str(e.value)
    assert not any(tmp_path.iterdir())  # nothing downloaded or written
    with pytest.raises(ModelError, match="tuitune models prepare gemma3-270m"):
        locate(tmp_path, "gemma3-270m")
    listed = {m.name: m for m in list_models(tmp_path)}
    assert listed["gemma3-270m"].license == "Gemma Terms of Use" and not listed["gemma3-270m"].ready
    assert listed["smollm2-135m-instruct"].license == "Apache-2.0"
    with pytest.raises(ModelError, match="bundled model's name"):
        register(tmp_path, "gemma3-270m", str(tmp_path))
