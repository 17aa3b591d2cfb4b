"""The one description of this machine (GPUs, CPU cores, RAM) and of a model's size, for every plan.

Every GPU decision (server memory shares, training precision, launcher, batch accounting) is a pure function of
a `Machine` and a `ModelSize`, so it can be checked with made-up machines. `detect()` builds the description once
per process: from `TUITUNE_HARDWARE=FILE` when set (a JSON description that replaces detection, to plan for a
machine you are not on), else from `nvidia-smi` (no torch import), the CPU affinity and psutil:

    {"gpus": [{"name": "NVIDIA A10", "total_gib": 24, "free_gib": 22.5, "capability": "8.6", "bf16": true}],
     "cpu_cores": 32, "ram_gib": 128}

`"gpus": []` is a CPU-only machine. Model sizes come from the model folder's config.json (and the sizes of its
safetensors files where present), so a folder that holds only a config.json plans exactly as the real model.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

ENV = "TUITUNE_HARDWARE"
NVIDIA_SMI_QUERY = "index,name,memory.total,memory.free,compute_cap,driver_version"
DTYPE_BYTES = {"float32": 4, "float": 4, "float16": 2, "half": 2, "bfloat16": 2, "float64": 8,
               "float8_e4m3fn": 1, "int8": 1}


class HardwareError(Exception):
    """A hardware description or a model folder that cannot be read, with what to fix."""


@dataclass(frozen=True)
class GPU:
    name: str
    total_gib: float
    free_gib: float
    capability: str = ""  # compute capability, "8.6"
    bf16: bool = False
    index: int = 0

    @property
    def label(self) -> str:
        return f"GPU {self.index} ({self.name})"


@dataclass(frozen=True)
class Machine:
    gpus: tuple[GPU, ...] = ()
    cpu_cores: int = 1
    ram_gib: float = 0.0
    driver: str = ""  # NVIDIA driver version (detected machines only)
    source: str = "detected"  # "detected" or the TUITUNE_HARDWARE file

    @property
    def cuda(self) -> bool:
        return bool(self.gpus)

    @property
    def described(self) -> bool:
        """The description came from TUITUNE_HARDWARE, not from this machine."""
        return self.source != "detected"

    @property
    def bf16(self) -> bool:
        return bool(self.gpus) and all(g.bf16 for g in self.gpus)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["gpus"] = [asdict(g) for g in self.gpus]
        return d


def bf16_capable(capability: str) -> bool:
    """bf16 runs natively from compute capability 8.0 (Ampere) on; T4 (7.5) and V100 (7.0) lack it."""
    try:
        return float(capability) >= 8.0
    except ValueError:
        return False


def _num(value, where: str, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise HardwareError(f"{where}: expected a number >= {minimum:g}, got {value!r}")
    return float(value)


def from_dict(data: object, source: str = "description") -> Machine:
    """A Machine from the TUITUNE_HARDWARE JSON format; errors name the field."""
    if not isinstance(data, dict):
        raise HardwareError(f"{source}: expected a JSON object with gpus, cpu_cores and ram_gib")
    unknown = set(data) - {"gpus", "cpu_cores", "ram_gib", "driver"}
    if unknown:
        raise HardwareError(f"{source}: unknown field(s) {', '.join(sorted(unknown))}; "
                            f"known: gpus, cpu_cores, ram_gib, driver")
    gpus_raw = data.get("gpus", [])
    if not isinstance(gpus_raw, list):
        raise HardwareError(f"{source}: gpus must be a list ([] for a CPU-only machine)")
    gpus = []
    for i, g in enumerate(gpus_raw):
        where = f"{source}: gpus[{i}]"
        if not isinstance(g, dict) or not isinstance(g.get("name"), str):
            raise HardwareError(f"{where}: expected an object with name, total_gib, free_gib, capability, bf16")
        total = _num(g.get("total_gib"), f"{where}.total_gib", minimum=0.1)
        free = _num(g.get("free_gib", total), f"{where}.free_gib")
        if free > total:
            raise HardwareError(f"{where}.free_gib: {free:g} is more than total_gib {total:g}")
        cap = str(g.get("capability", ""))
        bf16 = g.get("bf16", bf16_capable(cap))
        if not isinstance(bf16, bool):
            raise HardwareError(f"{where}.bf16: expected true or false, got {bf16!r}")
        gpus.append(GPU(g["name"], total, free, cap, bf16, i))
    cores = data.get("cpu_cores", os.cpu_count() or 1)
    if isinstance(cores, bool) or not isinstance(cores, int) or cores < 1:
        raise HardwareError(f"{source}: cpu_cores: expected a whole number >= 1, got {cores!r}")
    ram = _num(data.get("ram_gib", 0.0), f"{source}: ram_gib")
    return Machine(tuple(gpus), cores, ram, str(data.get("driver", "")), source)


def load_file(path: Path | str) -> Machine:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise HardwareError(f"{ENV}={path}: cannot read it ({e.strerror or e})") from None
    except json.JSONDecodeError as e:
        raise HardwareError(f"{ENV}={path}: line {e.lineno}: not valid JSON ({e.msg})") from None
    return from_dict(data, str(path))


def parse_nvidia_smi(text: str) -> tuple[list[GPU], str]:
    """GPUs and the driver version from `nvidia-smi --query-gpu=NVIDIA_SMI_QUERY --format=csv,noheader,nounits`
    (memory in MiB)."""
    gpus, driver = [], ""
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 6:
            continue
        try:
            index, total, free = int(parts[0]), float(parts[2]) / 1024, float(parts[3]) / 1024
        except ValueError:
            continue
        gpus.append(GPU(parts[1], round(total, 2), round(free, 2), parts[4], bf16_capable(parts[4]), index))
        driver = parts[5]
    return gpus, driver


def _cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _nvidia_smi() -> str:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return ""
    try:
        out = subprocess.run([exe, f"--query-gpu={NVIDIA_SMI_QUERY}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout if out.returncode == 0 else ""


def _visible(gpus: list[GPU]) -> list[GPU]:
    """Only the GPUs CUDA_VISIBLE_DEVICES lets this process use (by index), renumbered as CUDA sees them."""
    mask = os.environ.get("CUDA_VISIBLE_DEVICES")
    if mask is None:
        return gpus
    keep = [int(x) for x in mask.split(",") if x.strip().isdigit()]
    by_index = {g.index: g for g in gpus}
    return [GPU(**{**asdict(by_index[k]), "index": i}) for i, k in enumerate(keep) if k in by_index]


def detect_now() -> Machine:
    """The description, read now (not cached): TUITUNE_HARDWARE, else this machine."""
    path = os.environ.get(ENV)
    if path:
        return load_file(path)
    import psutil

    gpus, driver = parse_nvidia_smi(_nvidia_smi())
    return Machine(tuple(_visible(gpus)), _cpu_cores(), round(psutil.virtual_memory().total / 2**30, 1), driver)


@functools.cache
def detect() -> Machine:
    """The machine description, detected once per process (free GPU memory changes: plans that start
    something call `detect_now()`)."""
    return detect_now()


# ---- model sizes ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelSize:
    params: int
    weights_gib: float
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    max_position: int
    dtype: str = "bfloat16"
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES.get(self.dtype, 2)

    def kv_bytes_per_token(self, kv_dtype_bytes: int | None = None) -> int:
        """KV cache per token over all layers (keys and values), in the serving dtype (16-bit by default)."""
        b = kv_dtype_bytes or min(2, self.dtype_bytes)
        return 2 * self.layers * self.kv_heads * self.head_dim * b


def params_from_config(c: dict) -> int:
    h, layers = int(c["hidden_size"]), int(c["num_hidden_layers"])
    heads = int(c.get("num_attention_heads") or 1)
    kv = int(c.get("num_key_value_heads") or heads)
    head_dim = int(c.get("head_dim") or h // heads)
    inter = int(c.get("intermediate_size") or 4 * h)
    vocab = int(c.get("vocab_size") or 0)
    attn = h * heads * head_dim * 2 + 2 * h * kv * head_dim
    experts = int(c.get("num_local_experts") or c.get("num_experts") or 1)
    embed = vocab * h * (1 if c.get("tie_word_embeddings") else 2)
    return embed + layers * (attn + experts * 3 * h * inter)


def _safetensors_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors") if p.is_file())


def model_size(folder: Path | str) -> ModelSize:
    """The size of the model in `folder` from its config.json (weights: parameters x the config's dtype, or the
    safetensors files' size where that differs by more than 10%)."""
    folder = Path(folder)
    cfg_path = folder / "config.json"
    try:
        c = json.loads(cfg_path.read_text(encoding="utf-8"))
    except OSError:
        raise HardwareError(f"{folder} has no readable config.json; give a Hugging Face model folder") from None
    except json.JSONDecodeError as e:
        raise HardwareError(f"{cfg_path}: line {e.lineno}: not valid JSON ({e.msg})") from None
    if isinstance(c.get("text_config"), dict) and "hidden_size" not in c:
        c = {**c, **c["text_config"]}
    missing = [k for k in ("hidden_size", "num_hidden_layers") if not c.get(k)]
    if missing:
        raise HardwareError(f"{cfg_path}: {', '.join(missing)} missing; cannot size this model")
    params = params_from_config(c)
    dtype = str(c.get("torch_dtype") or c.get("dtype") or "bfloat16").replace("torch.", "")
    # From the config, so a folder with only config.json plans exactly as the real model; the files' size wins
    # only where it tells something the config doesn't (a quantized checkpoint, or layers the estimate misses).
    weights = params * DTYPE_BYTES.get(dtype, 2)
    on_disk = _safetensors_bytes(folder)
    if on_disk and not 0.9 * weights <= on_disk <= 1.1 * weights:
        weights = on_disk
    heads = int(c.get("num_attention_heads") or 1)
    return ModelSize(params=params, weights_gib=weights / 2**30, layers=int(c["num_hidden_layers"]),
                     hidden=int(c["hidden_size"]), heads=heads, kv_heads=int(c.get("num_key_value_heads") or heads),
                     head_dim=int(c.get("head_dim") or int(c["hidden_size"]) // heads),
                     max_position=int(c.get("max_position_embeddings") or 2048), dtype=dtype)
