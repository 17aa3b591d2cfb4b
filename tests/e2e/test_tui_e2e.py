"""The whole flow through the TUI with the keyboard, on the real embedded teacher (vLLM), real training and
real chat: task -> seeds -> round -> review with reasons -> lessons in the next prompt -> train -> quit and
reopen while it runs -> chat with streamed tokens."""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest

from tuitune.core.data import review
from tuitune.settings import load_settings
from tuitune.tui.app import make_app
from tuitune.tui.text import md_escape

pytestmark = pytest.mark.e2e

REPO_DATA = __import__("pathlib").Path(__file__).resolve().parents[2] / "data"


async def wait_for(pilot, cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await pilot.pause(0.5)


async def submit(pilot, text: str) -> None:
    pilot.app.screen.query_one("#prompt").value = text
    await pilot.press("enter")
    await pilot.pause()


def transcript(app) -> str:
    return "\n".join(m.source for m in app.screen.query("Markdown"))




def _pool_with(server, settings):
    """The app's engine pool with the test run's shared vLLM adopted (it stands in for the embedded teacher
    and the base model), injected into make_app."""
    from tuitune.core.serving.pool import EnginePool

    pool = EnginePool(settings, settings.project / "logs")
    pool.adopt(server)
    return pool


async def test_full_flow_with_the_keyboard(vllm_embedded, tmp_path, home):
    from tuitune.core.training.jobs import list_runs, run_dir, wait

    project = tmp_path / "proj"
    settings = load_settings(project=project, home=home)
    app = make_app(settings, engines=_pool_with(vllm_embedded, settings))
    async with app.run_test(size=(100, 32)) as pilot:
        await submit(pilot, "Translate Kubernetes documentation sentences from English to Chinese")
        await submit(pilot, f"/import {REPO_DATA / 'k8s_docs_en_zh.json'} seeds")
        n_seeds = app.store.count(origin="seed")
        assert n_seeds >= 3 and "Next: First round" in transcript(app)

        # round 1 on the real embedded teacher
        await submit(pilot, "/gen 4")
        await wait_for(pilot, lambda: "Next: /review" in " ".join(
            str(w.render()) for w in app.screen.query("#round-status")), 400, "round 1 to finish")
        synth = app.store.samples(origin="synth")
        assert synth, "the real teacher stored no sample"
        assert all(s.instruction.strip() and s.output.strip() for s in synth)

        # review with the keyboard: reject with a quick-pick reason (always: the lesson is checked below
        # whatever the teacher wrote), then accept the next sample when there is one
        await submit(pilot, "/review")
        assert type(app.screen).__name__ == "ReviewScreen"
        first_id = synth[0].id
        await pilot.press("r")
        await pilot.pause()
        await pilot.press("1")  # first quick pick
        await pilot.pause()
        if len(synth) > 1:
            await pilot.press("a")
            await pilot.pause()
        await pilot.press("q")
        await pilot.pause()
        assert app.store.get_sample(first_id).status == "rejected"
        assert app.store.get_sample(first_id).reason == review.COMMON_REASONS[0]
        if len(synth) > 1:
            assert app.store.get_sample(synth[1].id).status == "accepted"
        await submit(pilot, "/lessons")
        assert md_escape(review.COMMON_REASONS[0]) in transcript(app)  # as Markdown source: made\-up
        # round 2's prompt carries the lesson
        await submit(pilot, "/gen 2")
        await wait_for(pilot, lambda: app.store.conn.execute("SELECT COUNT(*) FROM rounds WHERE finished_at "
                                                             "IS NOT NULL").fetchone()[0] >= 2, 300, "round 2")
        prompt2 = app.store.conn.execute("SELECT prompt FROM rounds ORDER BY id DESC").fetchone()[0]
        assert review.COMMON_REASONS[0] in prompt2

        # train: the form, a tiny run, live progress in the transcript
        await pilot.press("f3")
        await pilot.pause()
        app.screen.query_one("#opt-max_steps").value = "3"
        assert app.screen.query_one("#opt-eval").value == "on"  # the form evaluates after training by default
        app.screen.query_one("#opt-eval").value = "off"  # (tests/e2e/test_learned.py covers the verdict)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "MainScreen" and app.screen.query("TrainCard"),
                       120, "the run to launch")
        card = app.screen.query_one("TrainCard")
        run_id = card.run_id
        await wait_for(pilot, lambda: card.last.get("step", 0) >= 1 or card.status != "running", 400,
                       "the first step event")
        assert card.status in ("running", "done"), card.last
    # the app is closed; the detached run goes on, and a new app shows it
    assert any(r.id == run_id for r in list_runs(project))
    app2 = make_app(settings, engines=_pool_with(vllm_embedded, settings))
    async with app2.run_test(size=(100, 32)) as pilot:
        await submit(pilot, "/runs")
        assert run_id in transcript(app2)
        info = await asyncio.to_thread(wait, run_dir(project, run_id), timeout=600)
        assert info.status == "done", info
        events = [json.loads(line) for line in (run_dir(project, run_id) / "events.jsonl").read_text().splitlines()]
        assert any(e["event"] == "step" for e in events)



async def test_chat_screen_streams_and_saves_a_seed(vllm_embedded, tmp_path, home):
    from tuitune.tui.screens.chat import ChatScreen

    settings = load_settings(project=tmp_path / "proj", home=home)
    app = make_app(settings, engines=_pool_with(vllm_embedded, settings))
    async with app.run_test(size=(100, 32)) as pilot:
        await app.push_screen(ChatScreen(run_id=None))
        await pilot.pause()
        await wait_for(pilot, lambda: app.screen.state == "ready", 120, "the chat server")
        assert "engine: vllm" in str(app.screen.query_one("#chat-engine").render())
        app.screen.query_one("#chat-input").value = "What is a Kubernetes pod?"
        await pilot.press("enter")
        await wait_for(pilot, lambda: any(m.source.strip() for m in app.screen.query(".msg-assistant")) and
                       not app.screen.busy, 120, "a streamed answer")
        answer = next(m.source for m in app.screen.query(".msg-assistant"))
        assert len(answer.split()) >= 2
        await pilot.press("ctrl+s")  # opens the save form with the answer to correct
        await pilot.pause()
        app.screen.query_one("#corrected").text = "A Pod is the smallest deployable unit in Kubernetes."
        await pilot.press("ctrl+s")
        await pilot.pause()
    from tuitune.core.data.store import Store

    with Store.open(tmp_path / "proj") as st:
        (seed,) = st.samples(origin="seed")
    assert seed.instruction == "What is a Kubernetes pod?"
    assert seed.output == "A Pod is the smallest deployable unit in Kubernetes."
    assert seed.original and seed.original["output"] == answer  # the model's answer is kept as the rejected one


async def test_compare_tuned_run_and_base_side_by_side(scrambled_adapter, embedded_model, tmp_path, home):
    """/compare on a run with a LoRA adapter: one vLLM server with the adapter enabled, two panes streaming, and
    each pane answers as its model does alone (greedy): the base pane is the base model, not the adapter (on the
    CPU build a batch mixing the two gave the base rows the adapter; see tests/e2e/test_mixed_lora_batches.py).
    The run's adapter has random B matrices, so tuned and base answers differ for sure."""
    from tuitune.core.serving.chat import ChatSession, GenParams
    from tuitune.core.training.config import TrainConfig
    from tuitune.tui.screens.chat import ChatScreen

    run = tmp_path / "proj" / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(TrainConfig(base="smollm2-135m-instruct",
                                                 base_path=str(embedded_model)).to_yaml())
    (run / "adapter").symlink_to(scrambled_adapter, target_is_directory=True)
    app = make_app(load_settings(project=tmp_path / "proj", home=home))
    greedy = GenParams(temperature=0, max_tokens=32)
    prompt = "What does a DaemonSet do in Kubernetes?"
    async with app.run_test(size=(120, 32)) as pilot:
        await submit(pilot, "/compare r1")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen) and app.screen.state == "ready",
                       300, "the tuned + base server")
        sessions = app.screen.sessions
        assert [s.backend.name for s in sessions] == ["r1", "smollm2-135m-instruct"]
        assert len(app.engines.running()) == 1  # the adapter rides on the base model's server
        for s in sessions:
            s.params = greedy
        app.screen.query_one("#chat-input").value = prompt
        await pilot.press("enter")
        await wait_for(pilot, lambda: len([m for m in app.screen.query(".msg-assistant") if m.source.strip()]) == 2
                       and not app.screen.busy, 120, "two streamed answers")
        panes = {s.backend.name: s.history[-1] for s in sessions}
        alone = {}
        for s in sessions:  # the same question to each model on its own, one after the other
            solo = ChatSession(s.backend, system=s.system, params=greedy)
            alone[s.backend.name] = (prompt, "".join([d async for d in solo.send(prompt)]))
        base, tuned = alone["smollm2-135m-instruct"][1], alone["r1"][1]
        assert base != tuned and panes["r1"][1] != panes["smollm2-135m-instruct"][1], (panes, alone)
        # each pane follows its own model past the point where the two models' answers part (the app's server
        # runs in bf16, where a batch may change a greedy answer late; tests/e2e/test_mixed_lora_batches.py
        # checks exact equality in fp32)
        for name, other in (("smollm2-135m-instruct", "r1"), ("r1", "smollm2-135m-instruct")):
            got = panes[name][1]
            assert _common(got, alone[name][1]) > _common(got, alone[other][1]), (name, panes, alone)
    assert not app.engines.running()  # quitting the app stopped the server it started


def _common(a: str, b: str) -> int:
    """Length of the common prefix of a and b."""
    return len(os.path.commonprefix([a, b]))
