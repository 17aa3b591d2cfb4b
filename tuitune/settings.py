"""Typed settings: one place for defaults. Environment variables use the prefix TUITUNE_."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tuitune.core.models import EMBEDDED_NAME


def _default_home() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("tuitune"))


class Settings(BaseSettings):
    """tuitune settings. Every field can be set as TUITUNE_<NAME> (e.g. TUITUNE_HOME)."""

    model_config = SettingsConfigDict(env_prefix="TUITUNE_", extra="ignore")

    home: Path = Field(default_factory=_default_home,
                       description="Cache folder for converted models and registries (not per project).")
    project: Path = Field(default_factory=Path.cwd, description="Project folder holding tuitune.db, runs/, exports/.")
    base_model: str = Field(EMBEDDED_NAME, description="Default base model: a registered name, a folder or a Hub "
                                                       "ID (ORG/NAME[@REVISION]).")
    hub: Literal["huggingface", "modelscope"] = Field(
        "huggingface", description="Where ORG/NAME model IDs come from: the Hugging Face Hub (its cache, "
                                   "HF_HOME/HF_HUB_CACHE) or ModelScope (needs `pip install modelscope`).")
    teacher_base_url: str = Field("", description="OpenAI-compatible base URL of the teacher; empty = embedded model via vLLM.")
    teacher_model: str = Field("", description="Teacher model name as the endpoint knows it.")
    teacher_api_key_env: str = Field("OPENAI_API_KEY",
                                     description="Name of the environment variable holding the teacher's API key.")
    vllm_startup_timeout: float = Field(600.0, description="Seconds to wait for a vLLM server to become healthy.")
    vllm_kv_cache_gib: int = Field(2, description="KV cache for the CPU build of vLLM (VLLM_CPU_KVCACHE_SPACE), GiB.")
    vllm_enforce_eager: bool = Field(True, description="Skip CUDA-graph/torch.compile warm-up (fast start, a bit slower).")

    @property
    def models_dir(self) -> Path:
        return self.home / "models"


def load_settings(**overrides) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
