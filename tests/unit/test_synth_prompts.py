"""Prompt templates: project overrides, clear errors, language rule for Chinese / mixed / English tasks."""

from __future__ import annotations

import pytest

from tuitune.core.synth import prompts


def test_project_template_overrides_the_shipped_one(tmp_path):
    shipped = prompts.render("synth_topics.md.j2", task_description="T", examples=[], n=3, language_rule="L")
    assert "List 3 distinct topics" in shipped
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "synth_topics.md.j2").write_text("Only {{ n }} topics for {{ task_description }}.")
    assert prompts.render("synth_topics.md.j2", project=tmp_path, task_description="T", n=3) == "Only 3 topics for T.\n"


def test_missing_template_and_missing_variable_are_reported(tmp_path):
    with pytest.raises(prompts.PromptError, match="not found"):
        prompts.render("no_such.md.j2")
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "x.j2").write_text("{{ missing_slot }}")
    with pytest.raises(prompts.PromptError, match="missing_slot"):
        prompts.render("x.j2", project=tmp_path)


@pytest.mark.parametrize(("texts", "expect"), [
    (["回答慢性病患者的问题", "高血压患者每天吃多少盐合适？"], "简体中文"),
    (["Translate this Kubernetes documentation into Simplified Chinese.",
      "A Pod is the smallest deployable unit. Pod 是最小的可部署单元。"], "English source, Chinese output"),
    (["Answer questions about asthma."], "language of the examples"),
])
def test_language_rule(texts, expect):
    assert expect in prompts.language_rule(texts)
