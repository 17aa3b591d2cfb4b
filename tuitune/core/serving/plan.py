"""Which vLLM servers serve a set of models, within the memory budget, and what a name or run id means.

Split from `serving.py` (one server's lifecycle); see `plan()` for why adapters share their base's server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tuitune.core.serving.vllm import Endpoint, ServingError, VLLMServer, VLLMUnavailable, has_gpu, lora_rank
from tuitune.settings import Settings


@dataclass
class ModelSpec:
    """A model to serve: a full model folder, or a LoRA adapter folder on top of `base`."""

    name: str
    path: Path
    base: Path | None = None
    base_name: str | None = None


@dataclass
class ServerGroup:
    """The servers started for a set of models, and which server serves which name."""

    servers: list[VLLMServer] = field(default_factory=list)

    def endpoint(self, name: str) -> Endpoint:
        for s in self.servers:
            if name in s.model_names:
                return s.endpoint(name)
        raise ServingError(f"{name!r} is not served; served: {', '.join(self.model_names)}")

    @property
    def model_names(self) -> list[str]:
        return [n for s in self.servers for n in s.model_names]

    def start(self, timeout: float | None = None) -> None:
        try:
            for s in self.servers:  # one at a time: on 2 cores parallel starts only slow each other down
                s.start(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for s in self.servers:
            s.stop()

    def alive(self) -> bool:
        return all(s.alive() for s in self.servers)

    def __enter__(self) -> ServerGroup:  # noqa: PYI034
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def plan(specs: list[ModelSpec], log_dir: Path, settings: Settings | None = None,
         available_gib: float | None = None) -> ServerGroup:
    """Decide how many vLLM servers serve `specs`, within the memory budget.

    Adapters are grouped with their base into ONE server (`--enable-lora`): the base weights and the KV cache
    exist once, and each extra tuned model costs only its adapter (a few MB). On CPU the KV cache reservation
    (TUITUNE_VLLM_KV_CACHE_GIB) and the per-process overhead dominate, so N separate servers would cost N times
    that. A full model (merged, full fine-tune) needs its own server; if all of them together do not fit in
    the available memory, this raises with what to do (serve adapters instead of merged models, or fewer).
    """
    settings = settings or Settings()
    servers: list[VLLMServer] = []
    by_base: dict[Path, VLLMServer] = {}
    for spec in specs:
        if spec.base is None:
            key = spec.path.resolve()
            if key in by_base and by_base[key].name != spec.name:
                raise ServingError(f"{spec.name!r} and {by_base[key].name!r} are the same folder {key}")
            if key not in by_base:
                srv = VLLMServer(spec.path, name=spec.name, log_path=log_dir / f"vllm-{spec.name}.log",
                                 settings=settings)
                by_base[key] = srv
                servers.append(srv)
    for spec in specs:
        if spec.base is not None:
            key = spec.base.resolve()
            if key not in by_base:
                name = spec.base_name or "base"
                srv = VLLMServer(spec.base, name=name, log_path=log_dir / f"vllm-{name}.log", settings=settings)
                by_base[key] = srv
                servers.append(srv)
            by_base[key].lora[spec.name] = spec.path
    if has_gpu() and len(servers) > 1:  # vLLM's CUDA build takes 90% of the GPU by default: share it out
        for srv in servers:
            srv.gpu_memory_utilization = 0.9 / len(servers)
    if available_gib is None:
        import psutil

        available_gib = psutil.virtual_memory().available / 2**30
    need = sum(s.memory_gib() for s in servers)
    if need > available_gib:  # "too little memory" is a reason vLLM cannot run: callers may fall back
        raise VLLMUnavailable(
            f"too little memory for vLLM: serving {', '.join(s.name for s in servers)} needs about {need:.1f} GiB "
            f"({len(servers)} vLLM processes), {available_gib:.1f} GiB is available. Serve the runs' adapters "
            f"(they share the base model's server) instead of merged models, serve fewer models at once, "
            f"or lower TUITUNE_VLLM_KV_CACHE_GIB.")
    return ServerGroup(servers)


def resolve_spec(settings: Settings, arg: str, *, merged: bool = False) -> ModelSpec:
    """A ModelSpec for a registered model name, a model folder, or a training run id (project/runs/<id>/).

    A run is served as its LoRA adapter on top of its base (sharing the base's server) when it has one vLLM can
    load; otherwise (full fine-tune, DoRA, or `merged=True`) as its merged model folder."""
    from tuitune.core.models import ModelError, resolve
    from tuitune.core.training.config import ConfigError, TrainConfig

    run_dir = settings.project / "runs" / arg
    if "/" not in arg and run_dir.is_dir():
        adapter, full = run_dir / "adapter", run_dir / "merged"
        if not merged and (adapter / "adapter_config.json").exists():
            try:
                lora_rank(adapter)
                cfg = TrainConfig.load(run_dir / "config.yaml")
                if cfg.base_path and (Path(cfg.base_path) / "config.json").exists():
                    return ModelSpec(arg, adapter, base=Path(cfg.base_path), base_name=cfg.base)
            except (ServingError, ConfigError, OSError):
                pass  # use the merged folder below
        if (full / "config.json").exists():
            return ModelSpec(arg, full)
        raise ServingError(f"run {arg} has no merged model or servable adapter yet; wait for it to finish "
                           f"(`tuitune runs`) or merge it (`tuitune merge {arg}`)")
    try:
        path = resolve(settings.models_dir, arg)
    except ModelError as e:
        raise ServingError(str(e)) from None
    return ModelSpec(path.name if Path(arg).expanduser().exists() else arg, path)
