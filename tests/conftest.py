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


# --- pytest-xdist (`make test` runs `-n 2 --dist loadgroup`) -------------------------------------------------
# A worker is a separate process with its own session, so a session- or module-scoped fixture is made once per
# worker that runs a test needing it. These expensive session fixtures (each starts a vLLM server) must be made
# once per run, so every test that needs one runs on the same worker:
SHARED_SESSION_FIXTURES = ("vllm_embedded", "vllm_base_and_tuned")


def _group_resources(item) -> set[str]:
    """What ties `item` to other tests: a shared server, its module's module-scoped fixtures (made once per
    module, and tests after the first may build on what earlier ones left there), an explicit xdist_group."""
    out = {f"group:{m.args[0] if m.args else m.kwargs.get('name', 'default')}"
           for m in item.iter_markers("xdist_group")}
    defs = getattr(item, "_fixtureinfo", None)
    for name in getattr(item, "fixturenames", ()):
        fdefs = defs.name2fixturedefs.get(name) if defs else None
        if not fdefs:
            continue
        if name in SHARED_SESSION_FIXTURES:
            out.add(f"session:{name}")
        elif fdefs[-1].scope in ("module", "class", "package"):
            out.add(f"module:{item.nodeid.split('::', 1)[0]}")
    return out


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook turns the marks into the work units' names
def pytest_collection_modifyitems(config, items):
    """Under `--dist loadgroup`: tests that share a resource (above) form one xdist group, run by one worker."""
    from xdist_support import loadgroup_on

    if not loadgroup_on(config):
        return
    parent: dict[str, str] = {}

    def find(r: str) -> str:
        while parent.setdefault(r, r) != r:
            r = parent[r]
        return r

    tied = {}
    for item in items:
        res = sorted(_group_resources(item))
        if res:
            tied[item] = res
            find(res[0])
            for r in res[1:]:
                parent[find(r)] = find(res[0])
    members: dict[str, set[str]] = {}
    for r in parent:
        members.setdefault(find(r), set()).add(r)
    for item, res in tied.items():
        comp = members[find(res[0])]
        explicit = sorted(r.split(":", 1)[1] for r in comp if r.startswith("group:"))
        name = explicit[0] if explicit else "+".join(sorted(r.split(":", 1)[1].rsplit("/", 1)[-1] for r in comp))
        item.add_marker(pytest.mark.xdist_group(name.replace("@", "_")))


@pytest.fixture
def seeded(store):
    """A project with a task and 3 accepted seeds of made-up words (the synthesis fault tests' starting point)."""
    from tuitune.core.data.samples import Sample

    store.set_task(description="Explain made-up words.", system_prompt="You explain words.")
    store.add_samples([Sample(f"Explain the word blorp{i}", f"Blorp{i} means thing {i}.", origin="seed",
                              status="accepted") for i in range(3)])
    return store
