"""A pool of running vLLM servers shared by one long-lived process (the TUI): the embedded teacher and the
chat models are started once, on first use, reused across rounds and chats, and stopped together at exit.
Starting blocks (about a minute on CPU): call `get()` from a worker thread, never from a UI event handler."""

from __future__ import annotations

import threading
from pathlib import Path

from tuitune.settings import Settings


class EnginePool:
    def __init__(self, settings: Settings, log_dir: Path):
        self.settings = settings
        self.log_dir = log_dir
        self._servers: dict[str, object] = {}
        self._borrowed: set[str] = set()  # adopted servers: used, never stopped or restarted by the pool
        self.note = ""  # what the user should know about the engines (e.g. the transformers fallback)
        self._lock = threading.Lock()

    def get(self, name: str, model: Path, *, lora: dict[str, Path] | None = None):
        """The running server for `name`, started if needed (restarted if it died or its adapters changed)."""
        from tuitune.core.serving.vllm import ServingError, VLLMServer

        with self._lock:
            srv = self._servers.get(name)
            if name in self._borrowed:
                if not srv.alive() or any(k not in srv.lora for k in (lora or {})):
                    raise ServingError(f"the server serving {name!r} ({srv.base_url}) is not ours to restart and "
                                       f"does not serve {sorted(lora or {})}; restart it there")
                return srv
            if srv is not None and (not srv.alive() or dict(srv.lora) != dict(lora or {})):
                srv.stop()
                srv = None
            if srv is None:
                srv = VLLMServer(model, name=name, lora=dict(lora or {}), settings=self.settings,
                                 log_path=self.log_dir / f"vllm-{name}.log")
                self._servers[name] = srv
                try:
                    srv.start()
                except BaseException:
                    self._servers.pop(name, None)
                    raise
            return srv

    def adopt(self, server) -> None:
        """Use an already running server (e.g. one `tuitune serve` started) under its name; the pool never
        stops it."""
        with self._lock:
            self._servers[server.name] = server
            self._borrowed.add(server.name)

    def embedded(self):
        from tuitune.core.models import EMBEDDED_NAME, prepare_embedded

        return self.get(EMBEDDED_NAME, prepare_embedded(self.settings.models_dir))

    def teacher_config(self, name: str | None = None):
        """The teacher's config, pointing at the pooled embedded server when it is the embedded teacher."""
        from tuitune.core.models import EMBEDDED_NAME
        from tuitune.core.synth.teacher import TeacherConfig, get_teacher

        cfg = get_teacher(self.settings, name)
        if not cfg.embedded:
            return cfg
        srv = self.embedded()
        return TeacherConfig(cfg.name, srv.base_url, EMBEDDED_NAME, "", supports_json_schema=True,
                             timeout=cfg.timeout, max_retries=cfg.max_retries, api_key=srv.api_key)

    def running(self) -> list[str]:
        return [n for n, s in self._servers.items() if s.alive()]

    def stop_all(self) -> None:
        with self._lock:
            for name, srv in self._servers.items():
                if name not in self._borrowed:
                    srv.stop()
            self._servers.clear()
            self._borrowed.clear()


def chat_targets(pool: EnginePool, run_id: str | None, *, with_base: bool = True) -> list:
    """Start (or reuse) what chatting with run `run_id` needs and return one backend per model: the tuned
    model first, then the base model when `with_base`. Without a run: just the base model.

    A run with a LoRA adapter is served as an adapter on its base's server (one process, `--enable-lora`);
    a run without one (full fine-tune) gets its own server for the merged folder."""
    from tuitune.core.serving.vllm import VLLMUnavailable

    try:
        return _vllm_targets(pool, run_id, with_base=with_base)
    except VLLMUnavailable as e:  # only where vLLM cannot run at all: chat in-process, and say so
        from tuitune.core.models import resolve
        from tuitune.core.serving.chat import TransformersBackend

        pool.note = f"{e} Using the transformers engine (slower, one answer at a time)."
        backends = []
        if run_id:
            merged = pool.settings.project / "runs" / run_id / "merged"
            if not (merged / "config.json").exists():
                raise
            backends.append(TransformersBackend(merged, run_id))
        if with_base or not backends:
            base = pool.settings.base_model
            backends.append(TransformersBackend(resolve(pool.settings.models_dir, base), base))
        return backends


def _vllm_targets(pool: EnginePool, run_id: str | None, *, with_base: bool) -> list:
    """vLLM backends: the run (as resolved by serving_plan.resolve_spec: its adapter on its base's server, or
    its merged folder on a server of its own), then the base model."""
    from tuitune.core.models import resolve
    from tuitune.core.serving.chat import OpenAIBackend
    from tuitune.core.serving.plan import resolve_spec

    settings = pool.settings
    backends = []
    base_name, base_path, lora = settings.base_model, None, {}
    if run_id:
        spec = resolve_spec(settings, run_id)
        if spec.base is not None:  # a LoRA adapter: served by its base model's server
            base_name, base_path, lora = spec.base_name or "base", spec.base, {run_id: spec.path}
        else:
            backends.append(OpenAIBackend.from_server(pool.get(run_id, spec.path), run_id))
    if lora or with_base or not backends:
        base_srv = pool.get(base_name, base_path or resolve(settings.models_dir, base_name), lora=lora)
        if lora:
            backends.append(OpenAIBackend.from_server(base_srv, run_id))
        if with_base or not backends:
            backends.append(OpenAIBackend.from_server(base_srv, base_name))
    return backends
