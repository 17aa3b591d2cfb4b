"""Review feeds synthesis: rejection reasons and edits of round 1 are in round 2's rendered prompt; review
results become preference pairs for `export --format dpo`; the headless review/lessons commands."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tuitune.cli import main
from tuitune.core.data import review
from tuitune.core.data.export import export
from tuitune.core.data.samples import Sample
from tuitune.core.synth import rounds
from tuitune.core.synth.engine import RoundParams, SynthRound, build_context, generation_messages
from tuitune.core.synth.teacher import Teacher, TeacherConfig

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def seeded(store):
    store.set_task(description="Answer questions about chronic diseases.", system_prompt="You are careful.")
    store.add_samples([Sample(f"Question about diabetes number {i}?", f"Answer {i}.", origin="seed",
                              status="accepted") for i in range(3)])
    return store


def _round(store, url, n=4):
    teacher = Teacher(TeacherConfig("fake", url, "fake-model", timeout=5))
    return asyncio.run(SynthRound(store, teacher, RoundParams(n=n, per_request=2, concurrency=2)).run())


def test_rejection_reasons_of_round_1_are_in_round_2_prompt(seeded, fake_endpoint):
    r1 = _round(seeded, fake_endpoint)
    assert r1.status == "finished"
    first = rounds.get_round(seeded, r1.round_id)
    assert "Lessons from review" not in first.prompt
    s1, s2, s3, s4 = seeded.samples(round_id=r1.round_id)
    review.reject(seeded, s1.id, "made-up drug names")
    review.reject(seeded, s2.id, "answer is in English but the user wrote Chinese")
    review.edit(seeded, s3.id, output="See your doctor before changing the dose.")
    review.accept(seeded, s4.id)
    r2 = _round(seeded, fake_endpoint)
    prompt = rounds.get_round(seeded, r2.round_id).prompt
    assert "Lessons from review" in prompt
    assert "- made-up drug names" in prompt
    assert "- answer is in English but the user wrote Chinese" in prompt
    assert "See your doctor before changing the dose." in prompt  # the correction
    # the accepted sample joined the example pool of later rounds
    ctx = build_context(seeded, RoundParams())
    assert s4.id in {s.id for s in ctx.pool} and s1.id not in {s.id for s in ctx.pool}


def test_no_lessons_flag_leaves_them_out(seeded):
    seeded.add_sample(Sample("q?", "bad", origin="synth", status="rejected", reason="too vague"))
    ctx_on = build_context(seeded, RoundParams())
    ctx_off = build_context(seeded, RoundParams(use_lessons=False))
    text_on = generation_messages(ctx_on, RoundParams(), 0, 2)[1]["content"]
    text_off = generation_messages(ctx_off, RoundParams(), 0, 2)[1]["content"]
    assert "too vague" in text_on and "too vague" not in text_off


def test_examples_rotate_across_requests(seeded):
    for i in range(5):
        seeded.add_sample(Sample(f"Accepted question {i}?", f"A{i}", origin="synth", status="accepted"))
    ctx = build_context(seeded, RoundParams(examples=2))
    seen = set()
    for i in range(4):
        seen |= {s.id for s in ctx.examples_for(i, 2)}
    assert len(seen) == 8  # 4 requests x 2 examples cover the whole pool of 8


def test_chinese_task_prompt_asks_for_chinese(store):
    store.set_task(description="回答慢性病患者的问题")
    store.add_sample(Sample("高血压患者每天吃多少盐合适？", "每天不超过5克。", origin="seed"))
    msgs = generation_messages(build_context(store, RoundParams()), RoundParams(), 0, 2)
    assert "简体中文" in msgs[0]["content"]
    assert "高血压患者每天吃多少盐合适" in msgs[1]["content"]  # not \\u-escaped


def test_review_results_export_as_preference_pairs(seeded, tmp_path):
    a = seeded.add_sample(Sample("How much salt per day?", "As much as you like.", origin="synth"))
    b = seeded.add_sample(Sample("How much salt per day?", "At most 5 g, including sauces.", origin="synth"))
    c = seeded.add_sample(Sample("Can I stop insulin?", "Yes.", origin="synth"))
    review.reject(seeded, a.id, "dangerous advice")
    review.accept(seeded, b.id)
    review.edit(seeded, c.id, output="Not without your doctor: stopping insulin can be dangerous.")
    review.accept(seeded, c.id)
    res = export(seeded, "dpo", tmp_path / "pairs.json")
    rows = json.loads(Path(res.files["all"]).read_text())
    assert len(rows) == 2
    by_prompt = {r["instruction"]: r for r in rows}
    assert by_prompt["How much salt per day?"]["chosen"] == "At most 5 g, including sauces."
    assert by_prompt["How much salt per day?"]["rejected"] == "As much as you like."
    assert by_prompt["Can I stop insulin?"]["chosen"].startswith("Not without your doctor")
    assert by_prompt["Can I stop insulin?"]["rejected"] == "Yes."
    trl = [json.loads(line) for line in (tmp_path / "pairs.trl.jsonl").read_text().splitlines()]
    assert {(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in trl} == {
        ("At most 5 g, including sauces.", "As much as you like."),
        ("Not without your doctor: stopping insulin can be dangerous.", "Yes.")}
    assert all(r["prompt"][-1]["role"] == "user" for r in trl)


def test_review_and_lessons_commands(seeded, project):
    ids = [seeded.add_sample(Sample(f"Pending question {i}?", f"Answer {i}.", origin="synth")).id for i in range(4)]
    run = CliRunner().invoke
    r = run(main, ["--project", str(project), "review", "--list", "--json"])
    assert r.exit_code == 0, r.output
    listed = [json.loads(line) for line in r.output.splitlines()]
    assert [x["id"] for x in listed] == ids
    # scripted actions
    r = run(main, ["--project", str(project), "review", "--accept", str(ids[0]), "--reject", str(ids[1]),
                   "--reason", "too generic"])
    assert r.exit_code == 0, r.output
    assert seeded.get_sample(ids[0]).status == "accepted" and seeded.get_sample(ids[1]).status == "rejected"
    r = run(main, ["--project", str(project), "review", "--reject", str(ids[2])])
    assert r.exit_code == 2 and "--reason" in r.output
    # the interactive loop: rate 4 then reject with common reason 3 (wrong language), then edit, then quit
    r = run(main, ["--project", str(project), "review"], input="4\nr\n3\ne\nFixed answer.\ny\nq\n")
    assert r.exit_code == 0, r.output
    s2, s3 = seeded.get_sample(ids[2]), seeded.get_sample(ids[3])
    assert (s2.status, s2.rating, s2.reason) == ("rejected", 4, "wrong language")
    assert s3.status == "edited" and s3.output == "Fixed answer." and s3.original["output"] == "Answer 3."
    r = run(main, ["--project", str(project), "review", "--undo"])
    assert r.exit_code == 0 and f"#{ids[3]}" in r.output
    r = run(main, ["--project", str(project), "lessons"])
    assert r.exit_code == 0
    assert "too generic" in r.output and "wrong language" in r.output
