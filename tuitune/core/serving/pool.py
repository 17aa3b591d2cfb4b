"""THE pool of model servers of one process: which server answers model X, started once and reused.

The TUI, `tuitune chat`, `serve`, `synth` and `eval` all go through an `EnginePool`:
- `serve(specs)`: the vLLM servers for a set of models (`plan()` decides servers, flags and memory); a server
  already running for the same folder with the needed adapters is reused, otherwise (re)started.
- `backends(specs, engine)`: one backend per model, with THE fallback policy: vLLM, and the in-process
  transformers engine only where vLLM cannot run at all (`VLLMUnavailable`: no build, platform, memory).
  Any other start failure is raised, never hidden behind the fallback.
- `live_teacher(config)` / `teacher_config(name)`: the one builder of the embedded teacher's endpoint.
- `chat_targets(pool, run_id, with_base=...)`: the tuned model first, then its base (chat and eval).
Starting blocks (about a minute on CPU): call these from a worker thread, never from a UI event handler.
`stop_all()` (or leaving `with EnginePool(...)`) stops what the pool started; adopted servers are left alone.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from tuitune.core.serving.errors import ServingError, VLLMUnavailable
from tuitune.core.serving.plan import ModelSpec, ServerGroup, plan, resolve_spec, run_base_spec

if TYPE_CHECKING:
    from tuitune.core.serving.backends import Backend
    from tuitune.core.serving.vllm import VLLMServer
    from tuitune.core.synth.teacher import TeacherConfig
    from tuitune.settings import Settings

ENGINES = ("auto", "vllm", "transformers")


class EnginePool:
    def __init__(self, settings: Settings, log_dir: Path):
        self.settings = settings
        self.log_dir = log_dir
        self._servers: dict[str, VLLMServer] = {}
        self._borrowed: set[str] = set()  # adopted servers: used, never stopped or restarted by the pool
        self.note = ""  # what the user should know about the engines (e.g. why transformers answers)
        self.notes: list[str] = []  # what starts had to change (e.g. "port 8000 is taken; using 41234")
        self._lock = threading.Lock()

    # ---- vLLM servers ----
    def serve(self, specs: list[ModelSpec], *, port: int | None = None, timeout: float | None = None) -> ServerGroup:
        """Running servers for `specs` (started, reused or restarted with more adapters). `port` is a preference
        for the first server the call starts. On failure, what this call started is stopped again."""
        with self._lock:
            mine = {n: s for n, s in self._servers.items() if s.alive() and n not in self._borrowed}
            held = {n: s.memory_gib() for n, s in mine.items()}
            held_gpu = {n: (s.gpu_share.gpus, s.gpu_share.gib_per_gpu) for n, s in mine.items() if s.gpu_share}
            group = plan(specs, self.log_dir, self.settings, reclaimable=held, reclaimable_gpu=held_gpu)
            started: list[VLLMServer] = []
            try:
                for i, want in enumerate(group.servers):
                    group.servers[i] = self._running(want, port if not started else None, timeout, started)
            except BaseException:
                for srv in started:
                    srv.stop()
                    self._servers.pop(srv.name, None)
                raise
            return group

    def _running(self, want: VLLMServer, port: int | None, timeout: float | None,
                 started: list[VLLMServer]) -> VLLMServer:
        have = self._servers.get(want.name)
        if have is not None and have.alive() and have.model.resolve() == want.model.resolve() and \
                want.lora.items() <= have.lora.items():
            return have
        if want.name in self._borrowed:
            raise ServingError(f"the server serving {want.name!r} ({have.base_url}) is not ours to restart and does "
                               f"not serve {sorted(want.lora)}; restart it there")
        if have is not None:
            if have.model.resolve() == want.model.resolve():  # keep the adapters it served: no churn back
                want.lora = {**have.lora, **want.lora}
            have.stop()
            self._servers.pop(want.name, None)
        want.requested_port = port
        want.start(timeout)
        self.notes.extend(want.notes)
        self._servers[want.name] = want
        started.append(want)
        return want

    def adopt(self, server: VLLMServer) -> None:
        """Use an already running server (e.g. one `tuitune serve` started) under its name; never stop it."""
        with self._lock:
            self._servers[server.name] = server
            self._borrowed.add(server.name)

    def embedded(self) -> VLLMServer:
        """The embedded model's server (the offline teacher), started on first use."""
        from tuitune.core.models import EMBEDDED_NAME, prepare_embedded

        spec = ModelSpec(EMBEDDED_NAME, prepare_embedded(self.settings.models_dir))
        return self.serve([spec]).servers[0]

    # ---- teachers ----
    def live_teacher(self, config: TeacherConfig) -> TeacherConfig:
        """`config` ready to use: the embedded teacher points at the pooled embedded server (started on first
        use, with its key); any other teacher is returned as it is."""
        if not config.embedded:
            return config
        from tuitune.core.models import EMBEDDED_NAME

        srv = self.embedded()
        return replace(config, base_url=srv.base_url, model=EMBEDDED_NAME, api_key_env="", supports_json_schema=True,
                       api_key=srv.api_key)

    def teacher_config(self, name: str | None = None) -> TeacherConfig:
        """The named teacher (teachers.yaml, settings, or the embedded one), ready to use."""
        from tuitune.core.synth.teacher import get_teacher

        return self.live_teacher(get_teacher(self.settings, name))

    # ---- backends: the one fallback policy ----
    def backends(self, specs: list[ModelSpec], *, engine: str = "auto", timeout: float | None = None) -> list[Backend]:
        """One backend per spec, in order. engine "auto": vLLM, or the in-process transformers engine only where
        vLLM cannot run here (then `note` says why); "vllm": never falls back; "transformers": never starts vLLM."""
        from tuitune.core.serving.backends import OpenAIBackend, TransformersBackend

        if engine not in ENGINES:
            raise ServingError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
        if engine != "transformers":
            try:
                group = self.serve(specs, timeout=timeout)
                self.note = ""
                return [OpenAIBackend(group.endpoint(sp.name), group.server_for(sp.name)) for sp in specs]
            except VLLMUnavailable as e:
                if engine == "vllm":
                    raise
                self.note = f"{e} Using the transformers engine (slower, one answer at a time)."
        return [TransformersBackend(_full_model(sp), sp.name) for sp in specs]

    def running(self) -> list[str]:
        return [n for n, s in self._servers.items() if s.alive()]

    def stop_all(self) -> None:
        with self._lock:
            for name, srv in self._servers.items():
                if name not in self._borrowed:
                    srv.stop()
            self._servers.clear()
            self._borrowed.clear()

    def __enter__(self) -> EnginePool:  # noqa: PYI034
        return self

    def __exit__(self, *exc) -> None:
        self.stop_all()


def _full_model(spec: ModelSpec) -> Path:
    """The folder the transformers engine loads: the spec's model, or for an adapter its run's merged model."""
    if spec.base is None:
        return spec.path
    merged = spec.path.parent / "merged"
    if not (merged / "config.json").exists():
        raise ServingError(f"{spec.name} is a LoRA adapter without a merged model, which the transformers engine "
                           f"needs; merge the run first (`tuitune merge {spec.name}`)")
    return merged


def chat_targets(pool: EnginePool, run_id: str | None, *, with_base: bool = True, engine: str = "auto",
                 timeout: float | None = None, merged: bool = False) -> list[Backend]:
    """Backends to chat with (or evaluate) run `run_id`: the tuned model first, then the base model it was
    trained from when `with_base`. Without a run: the settings' base model.

    A run with a LoRA adapter is served as an adapter on its base's server (one process, `--enable-lora`);
    a run without one (full fine-tune, DoRA), or with `merged`, gets its own server for its merged folder."""
    settings = pool.settings
    if not run_id:
        return pool.backends([resolve_spec(settings, settings.base_model)], engine=engine, timeout=timeout)
    specs = [resolve_spec(settings, run_id, merged=merged)]
    if with_base:
        specs.append(run_base_spec(settings, run_id))
    return pool.backends(specs, engine=engine, timeout=timeout)
