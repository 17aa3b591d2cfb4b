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
