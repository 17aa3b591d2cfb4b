"""Project rules that keep the app fast and the core reusable."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import tuitune.core

HEAVY = ("torch", "transformers", "trl", "peft", "vllm", "datasets", "bitsandbytes")


def core_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(tuitune.core.__path__, "tuitune.core."))


def run_py(code: str) -> str:
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_core_imports_no_textual_or_rich():
    mods = core_modules()
    assert "tuitune.core.data.store" in mods and "tuitune.core.data.formats" in mods
    out = run_py(
        "import importlib, sys\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] in ('textual', 'rich')))")
    assert out == "[]"


def test_core_has_no_heavy_imports_at_module_level():
    out = run_py(
        "import importlib, sys\n"
        f"for m in {core_modules()!r}: importlib.import_module(m)\n"
        f"print(sorted(n for n in sys.modules if n.split('.')[0] in {HEAVY!r}))")
    assert out == "[]"


def test_help_path_imports_nothing_heavy():
    out = run_py(
        "import sys\nfrom click.testing import CliRunner\nfrom tuitune.cli import main\n"
        "r = CliRunner().invoke(main, ['--help'])\nassert r.exit_code == 0, r.output\n"
        "assert 'import' in r.output and 'train' in r.output\n"
        f"print(sorted({{n.split('.')[0] for n in sys.modules}} & set({HEAVY!r} + ('textual',))))")
    assert out == "[]"


def _imports(path) -> set[str]:
    """Top-level package of every import in the file, at module level or inside functions alike."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_core_source_never_imports_the_ui_anywhere():
    """sys.modules only sees module-level imports; a Textual/Rich/click import inside a core function
    would pass that check and still tie core to the UI: read the source instead."""
    from pathlib import Path

    core = Path(tuitune.core.__path__[0])
    offenders = {str(p.relative_to(core)): sorted(_imports(p) & {"textual", "rich", "click"})
                 for p in core.rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}
    assert len(offenders) > 30  # the walk did see the package


def test_the_ast_check_catches_an_import_inside_a_function(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from textual.app import App\n    import rich.console\n")
    assert _imports(f) == {"textual", "rich"}


# ---- the floors of core (docs/architecture.md): a lower floor never imports a higher one -------------------------

FLOORS = ("data", "synth", "training", "serving", "evaluation")  # lowest first


def _core_graph() -> dict[str, set[str]]:
    """tuitune.core module -> the tuitune.core modules it imports (module level or inside functions alike)."""
    import ast
    from pathlib import Path

    core = Path(tuitune.core.__path__[0])
    names = {}
    for p in core.rglob("*.py"):
        parts = ("tuitune", "core", *p.relative_to(core).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    graph = {}
    for name, p in names.items():
        deps = set()
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            deps |= {t for t in targets if t in names and t != name}
        graph[name] = deps
    return graph


def _floor(module: str) -> int | None:
    parts = module.split(".")
    return FLOORS.index(parts[2]) if len(parts) > 3 and parts[2] in FLOORS else None


def test_no_core_floor_imports_a_higher_floor():
    """E.g. the training worker runs the verdict (evaluation) through training/after.py's named steps, never by
    importing evaluation; the parity check's vLLM probe (serving) went with it."""
    graph = _core_graph()
    up = sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps
                if _floor(m) is not None and _floor(d) is not None and _floor(d) > _floor(m))
    assert up == []
    assert "tuitune.core.training.worker" in graph and "tuitune.core.evaluation.after_training" in graph


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The groups of more than one module that import each other, directly or around a loop (networkx comes with
    torch)."""
    import networkx as nx

    g = nx.DiGraph([(m, d) for m, deps in graph.items() for d in deps])
    return [c for c in nx.strongly_connected_components(g) if len(c) > 1]


# Cycles that were there before this test and are not yet untied; a new one fails the test, and so does store<->staging.
KNOWN_CYCLES = [
    {"tuitune.core.hub", "tuitune.core.models"},
    {"tuitune.core.data.formats", "tuitune.core.data.trl_formats"},
    {"tuitune.core.evaluation.evaluate", "tuitune.core.evaluation.parity", "tuitune.core.evaluation.report"},
]


def test_no_new_import_cycles_in_core_and_store_owns_staging():
    graph = _core_graph()
    assert "tuitune.core.data.store" in graph["tuitune.core.data.staging"]
    assert "tuitune.core.data.staging" not in graph["tuitune.core.data.store"]
    assert [c for c in _cycles(graph) if c not in KNOWN_CYCLES] == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_core_evaluation_builds_no_settings_of_its_own():
    """Settings are built at an entry (the CLI, make_app, the worker process) and passed down."""
    import ast
    from pathlib import Path

    folder = Path(tuitune.core.__path__[0]) / "evaluation"
    calls = set()
    for p in folder.glob("*.py"):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "Settings":
                calls.add(p.name)
    # parity.py: parity_check(settings=None) falls back to Settings(); every caller passes them (the worker too).
    assert calls <= {"parity.py"}, calls
    assert (folder / "after_training.py").exists()


def test_the_workers_after_training_steps_resolve():
    import pytest

    from tuitune.core.evaluation.after_training import after_training
    from tuitune.core.training import after

    assert [after.resolve(s) for s in after.STEPS] == [after_training]
    with pytest.raises(LookupError, match="no such function"):
        after.resolve("tuitune.core.evaluation.after_training:nothing_here")
