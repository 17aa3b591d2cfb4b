"""A TUITUNE_* variable with a bad value stops every command with the variable, its value and what it takes, exit 2
(it was a pydantic traceback)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(("var", "value", "words"), [
    ("TUITUNE_HUB", "foo", "'huggingface' or 'modelscope'"),
    ("TUITUNE_VLLM_KV_CACHE_GIB", "lots", "valid integer"),
])
def test_a_bad_setting_is_named_without_a_traceback(tmp_path, var, value, words):
    out = subprocess.run([sys.executable, "-m", "tuitune.cli", "--project", str(tmp_path), "stats"],
                         check=False, capture_output=True, text=True, timeout=60,
                         env={**os.environ, var: value})
    assert out.returncode == 2, out
    assert f"{var}={value!r}" in out.stderr and words in out.stderr and f"unset {var}" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "tuitune.db").exists()
