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
