"""e2e fixtures: ONE vLLM server on the embedded model for the whole test run (other e2e tests share it)."""

from __future__ import annotations

import pytest

EMBEDDED_SERVED_NAME = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def vllm_embedded(embedded_model, tmp_path_factory):
    """A started VLLMServer serving the embedded model as "smollm2-135m-instruct", shared by the session.

    Uses the run's settings (TUITUNE_VLLM_KV_CACHE_GIB, TUITUNE_VLLM_ENFORCE_EAGER). Do not stop it in a test;
    if a test must break it, use its own server. The log is in the session's temp folder (path: server.log_path).
    """
    from tuitune.core.serving import VLLMServer
    from tuitune.settings import Settings

    log = tmp_path_factory.mktemp("vllm") / "vllm-embedded.log"
    server = VLLMServer(embedded_model, name=EMBEDDED_SERVED_NAME, log_path=log, settings=Settings(),
                        max_model_len=2048)
    server.start()
    yield server
    server.stop()
