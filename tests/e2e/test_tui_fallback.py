"""Where vLLM cannot run at all, the chat screen falls back to the in-process transformers engine (the real
embedded model) and says which engine answers."""

from __future__ import annotations

import time

import pytest

from tuitune.settings import load_settings
from tuitune.tui.app import make_app

pytestmark = pytest.mark.e2e


async def test_chat_falls_back_to_transformers_when_vllm_is_impossible(tmp_path, home, monkeypatch):
    from tuitune.core.serving import preflight
    from tuitune.tui.screens.chat import ChatScreen

    # fault injection: this machine can run vLLM, so pretend it cannot (e.g. macOS, no vLLM build)
    monkeypatch.setattr(preflight, "vllm_unavailable_reason", lambda *a, **kw: "no vLLM build for this platform.")
    app = make_app(load_settings(project=tmp_path / "proj", home=home))
    async with app.run_test(size=(100, 30)) as pilot:
        await app.push_screen(ChatScreen())
        await pilot.pause()
        deadline = time.monotonic() + 120
        while app.screen.state != "ready":
            assert time.monotonic() < deadline, str(app.screen.query_one("#chat-engine").render())
            await pilot.pause(0.5)
        engine = str(app.screen.query_one("#chat-engine").render())
        assert "engine: transformers" in engine and "no vLLM build for this platform" in engine
        assert not app.engines.running()  # no vLLM process was started
        await pilot.press("ctrl+o")  # greedy: the 135M model's sampled answers vary from run to run
        assert [s.params.temperature for s in app.screen.sessions] == [0.0]
        app.screen.query_one("#chat-input").value = "What is the capital of France?"
        await pilot.press("enter")
        while not any(m.source.strip() for m in app.screen.query(".msg-assistant")) or app.screen.busy:
            assert time.monotonic() < deadline + 120, "no answer streamed"
            await pilot.pause(0.5)
        answer = next(m.source for m in app.screen.query(".msg-assistant"))
        assert "Paris" in answer
        assert "temperature 0 (greedy)" in str(app.screen.query_one("#chat-engine").render())

        # F6: answer settings apply to the next answer (here: at most 2 tokens)
        await pilot.press("f6")
        await pilot.pause()
        app.screen.query_one("#gen-max_tokens").value = "2"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "max tokens 2" in str(app.screen.query_one("#chat-engine").render())
        app.screen.query_one("#chat-input").value = "Tell me a long story about the sea."
        await pilot.press("enter")
        await pilot.pause(0.5)
        while app.screen.busy or len(app.screen.query(".msg-assistant")) < 2:
            assert time.monotonic() < deadline + 240, "no second answer"
            await pilot.pause(0.5)
        second = list(app.screen.query(".msg-assistant"))[1].source
        tok = app.screen.sessions[0].backend._tok
        assert 0 < len(tok(second, add_special_tokens=False)["input_ids"]) <= 3, second  # 2 tokens, re-tokenized
