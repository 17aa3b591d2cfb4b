"""Base and adapter requests in flight at the same moment on one vLLM server with --enable-lora must get the
answers each gets alone (greedy). On the CPU build they did not: the base rows of a mixed batch were computed
with the last adapter slot's weights (vLLM's torch LoRA ops index with the "no adapter" index -1), so /compare's
base column showed the tuned model. `vllm.lora_slots` keeps a spare empty slot there; these tests fail without it.

They use the shared server of tests/e2e/conftest.py (`vllm_base_and_tuned`: base, "tuned", "scrambled", in float32
so that batching alone does not change a greedy answer), where the "scrambled" adapter's random B matrices make its
answers unlike the base's. Measured with 1 LoRA slot (before the fix): the base answer of every base + adapter
pair differed from the base asked alone; with the spare slot every answer matched, in pairs and in fours.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e
PROMPTS = ["What does a DaemonSet do in Kubernetes?"]  # with 1 slot every mixed pair failed on it (and on others)


def _params():
    from tuitune.core.serving.chat import GenParams

    return GenParams(temperature=0, max_tokens=32)


async def _alone(server, model: str, prompt: str) -> str:
    from tuitune.core.serving.chat import ChatSession, OpenAIBackend

    session = ChatSession(OpenAIBackend.from_server(server, model), params=_params())
    return "".join([d async for d in session.send(prompt)])


def test_the_cpu_build_gets_a_spare_empty_lora_slot():
    from tuitune.core.serving.vllm import lora_slots

    assert lora_slots(1, cuda=False) == 2 and lora_slots(3, cuda=False) == 4
    assert lora_slots(2, cuda=True) == 2  # the CUDA kernels skip "no adapter" rows themselves


async def test_base_and_adapter_asked_at_once_answer_as_each_alone(vllm_base_and_tuned):
    """compare() (chat's side by side, /compare, `tuitune chat A B`) sends both at once: same answers as alone."""
    from tuitune.core.serving.chat import OpenAIBackend, compare_collect

    s = vllm_base_and_tuned
    for prompt in PROMPTS:
        base, scrambled = await _alone(s, "base", prompt), await _alone(s, "scrambled", prompt)
        assert base.strip() and scrambled.strip() and base != scrambled, "the adapter must change the answer"
        backends = [OpenAIBackend.from_server(s, "base"), OpenAIBackend.from_server(s, "scrambled")]
        for _ in range(2):  # batching depends on timing: ask more than once
            both = await compare_collect(backends, prompt, params=_params())
            assert both == {"base": base, "scrambled": scrambled}, (prompt, both, base, scrambled)
        # several of each at once (the load eval or synth puts on one server)
        many = await asyncio.gather(*[_alone(s, m, prompt) for m in ("scrambled", "base", "base", "scrambled")])
        assert many == [scrambled, base, base, scrambled], prompt


def test_cli_chat_base_and_adapter_side_by_side_answers_as_each_alone(vllm_base_and_tuned, tmp_path):
    """`tuitune chat base scrambled --prompt ...` (piped: one `[model] answer` line per model) at the server."""
    s = vllm_base_and_tuned
    prompt = PROMPTS[0]
    alone = {m: asyncio.run(_alone(s, m, prompt)) for m in ("base", "scrambled")}
    out = subprocess.run([sys.executable, "-m", "tuitune.cli", "--project", str(tmp_path), "chat", "--url",
                          s.base_url, "--api-key-env", "K", "base", "scrambled", "--temperature", "0",
                          "--max-tokens", "32", "--prompt", prompt], check=False, capture_output=True, text=True,
                         timeout=180, env={**os.environ, "K": s.api_key})
    assert out.returncode == 0, out.stderr[-2000:]
    head, sep, tail = out.stdout.rstrip("\n").partition("\n[scrambled] ")
    assert sep and head.startswith("[base] "), out.stdout
    assert {"base": head[len("[base] "):], "scrambled": tail} == alone
