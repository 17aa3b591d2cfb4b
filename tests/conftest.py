"""Shared fixtures. Real fixtures from ../shared/fixtures/real are read in place, never copied."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "fixtures" / "real"


@pytest.fixture(scope="session")
def real_fixtures() -> Path:
    if not REAL.is_dir():
        pytest.fail(f"{REAL} is missing: the real fixtures live in ../shared/fixtures/real beside the repo")
    return REAL


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The user's model cache (TUITUNE_HOME or platformdirs): `make test` prepared the embedded model there."""
    from tuitune.settings import Settings

    return Settings().models_dir


@pytest.fixture(scope="session")
def embedded_model(models_dir) -> Path:
    """Folder of the converted embedded model (converted once if `make model` did not run)."""
    from tuitune.core.models import prepare_embedded

    return prepare_embedded(models_dir)


@pytest.fixture
def project(tmp_path) -> Path:
    """An empty project folder."""
    p = tmp_path / "proj"
    p.mkdir()
    return p


@pytest.fixture
def store(project):
    from tuitune.core.data.store import Store

    s = Store.open(project)
    yield s
    s.close()


@pytest.fixture
def home(tmp_path, models_dir) -> Path:
    """A private TUITUNE_HOME (teachers.yaml, registry) that shares the already prepared model cache."""
    h = tmp_path / "home"
    h.mkdir()
    (h / "models").symlink_to(models_dir, target_is_directory=True)
    return h


@pytest.fixture
def fake_endpoint():
    """URL of a local fake OpenAI-compatible teacher (tests/fake_teacher.py) answering valid samples. Fault tests
    start their own with other modes; real-teacher tests use the e2e `vllm_embedded` server."""
    import fake_teacher

    proc, url = fake_teacher.spawn("--mode", "ok")
    yield url
    proc.kill()
    proc.wait()
