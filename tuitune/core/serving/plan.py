"""Which vLLM servers serve a set of models, within the memory budget, and what a name or run id means.

`plan()` only decides (servers, flags, memory); starting, reusing and stopping them is the pool's job
(`pool.py`), and one server's lifecycle is `vllm.py`'s. See `plan()` for why adapters share their base's server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tuitune.core import hardware, resources
from tuitune.core.hardware import Machine
from tuitune.core.resources import Holder, thread_budget
from tuitune.core.serving.errors import ServingError, VLLMUnavailable
from tuitune.core.serving.gpu_plan import ServerNeed, plan_gpu
from tuitune.core.serving.preflight import available_gib as free_gib
from tuitune.core.serving.preflight import folder_gib
from tuitune.core.serving.vllm import Endpoint, VLLMServer, lora_rank

if TYPE_CHECKING:
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
    """Servers for a set of models (planned by `plan()`, running once `EnginePool.serve` returns them), and which
    server serves which name."""

    servers: list[VLLMServer] = field(default_factory=list)

    def server_for(self, name: str) -> VLLMServer:
        for s in self.servers:
            if name in s.model_names:
                return s
        raise ServingError(f"{name!r} is not served; served: {', '.join(self.model_names)}")

    def endpoint(self, name: str) -> Endpoint:
        return self.server_for(name).endpoint(name)

    @property
    def model_names(self) -> list[str]:
        return [n for s in self.servers for n in s.model_names]


def plan(specs: list[ModelSpec], log_dir: Path, settings: Settings, available_gib: float | None = None,
         reclaimable: dict[str, float] | None = None, *, machine: Machine | None = None,
         holders: list[Holder] | None = None, reclaimable_gpu: dict[str, tuple[tuple[int, ...], float]] | None = None,
         ) -> ServerGroup:
    """Decide how many vLLM servers serve `specs`, within the memory budget.

    Adapters are grouped with their base into ONE server (`--enable-lora`): the base weights and the KV cache
    exist once, and each extra tuned model costs only its adapter (a few MB). On CPU the KV cache reservation
    (TUITUNE_VLLM_KV_CACHE_GIB) and the per-process overhead dominate, so N separate servers would cost N times
    that. A full model (merged, full fine-tune) needs its own server; if all of them together do not fit in
    the available memory, this raises with what to do (serve adapters instead of merged models, or fewer).
    `reclaimable`: server name -> GiB held by a running server of that name, which the plan reuses or replaces.

    With GPUs (`machine`, default: this machine's description), `gpu_plan.plan_gpu` gives each server its GPUs,
    memory share and context length from the free GPU memory and what this app already runs (`holders`,
    default: found on this machine); `reclaimable_gpu`: server name -> (GPUs, GiB per GPU) it holds now. On CPU
    every server gets a thread budget beside what already runs (resources.thread_budget).
    """
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
    machine = machine or hardware.detect_now()
    holders = resources.running() if holders is None else holders
    mine = {s.name for s in servers}
    replaced = mine & (set(reclaimable or {}) | set(reclaimable_gpu or {}))  # this process's, reused or replaced
    others = [h for h in holders if not (h.kind == "server" and h.name in replaced)]
    for srv in servers:
        srv.cuda = machine.cuda
    if machine.cuda:
        reclaim: dict[int, float] = {}
        for name, (gpus, gib) in (reclaimable_gpu or {}).items():
            if name in mine:
                for k in gpus:
                    reclaim[k] = reclaim.get(k, 0.0) + gib
        needs = [ServerNeed(s.name, _size(s.model), sum(folder_gib(p) for p in s.lora.values())) for s in servers]
        for srv, share in zip(servers, plan_gpu(machine, needs, others, reclaim)):
            srv.gpu_share = share
    else:
        for i, srv in enumerate(servers):  # each new server also counts the ones planned before it
            srv.threads = thread_budget(machine, others + [Holder("server", s.name, cores=s.threads.cores)
                                                           for s in servers[:i]])
    if available_gib is None:
        available_gib = free_gib()
    available_gib += sum((reclaimable or {}).get(s.name, 0.0) for s in servers)
    need = sum(s.memory_gib() for s in servers)
    if need > available_gib:  # "too little memory" is a reason vLLM cannot run: callers may fall back
        raise VLLMUnavailable(
            f"too little memory for vLLM: serving {', '.join(s.name for s in servers)} needs about {need:.1f} GiB "
            f"({len(servers)} vLLM processes), {available_gib:.1f} GiB is available. Serve the runs' adapters "
            f"(they share the base model's server) instead of merged models, serve fewer models at once"
            + ("." if machine.cuda else ", or lower TUITUNE_VLLM_KV_CACHE_GIB."))
    return ServerGroup(servers)


def dry_run(specs: list[ModelSpec], log_dir: Path, settings: Settings, *, port: int | None = None,
            machine: Machine | None = None, holders: list[Holder] | None = None) -> dict:
    """What serving `specs` would start, starting nothing: per server its models, the exact vLLM command line
    and the environment tuitune sets for it (the API key redacted). Raises like `plan()` when it can't fit."""
    from tuitune.core.serving import auth
    from tuitune.core.serving.preflight import free_port

    group = plan(specs, log_dir, settings, machine=machine, holders=holders)
    out = []
    for i, srv in enumerate(group.servers):
        srv.port = free_port(port if i == 0 else None)
        env = srv.env(base={})
        env[auth.KEY_ENV] = "<redacted>"
        out.append({"models": srv.model_names, "command": srv.command(), "env": env,
                    "gpu_gib": srv.gpu_share.gib_per_gpu if srv.gpu_share else None})
    return {"servers": out}


def _size(model: Path) -> hardware.ModelSize:
    try:
        return hardware.model_size(model)
    except hardware.HardwareError as e:
        raise ServingError(str(e)) from None


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


def run_base_spec(settings: Settings, run_id: str) -> ModelSpec:
    """The base model run `run_id` was trained from (its config's `base`, at `base_path` when that folder
    exists): what the tuned model is compared with."""
    from tuitune.core.training.config import ConfigError, TrainConfig

    try:
        cfg = TrainConfig.load(settings.project / "runs" / run_id / "config.yaml")
    except (ConfigError, OSError) as e:
        raise ServingError(f"run {run_id} has no readable config.yaml ({e}); is it a training run folder?") from None
    if cfg.base_path and (Path(cfg.base_path) / "config.json").exists():
        return ModelSpec(cfg.base, Path(cfg.base_path))
    return resolve_spec(settings, cfg.base)
