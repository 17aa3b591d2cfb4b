"""Hostile import inputs end with a clear error (file + reason), exit 2 and nothing stored: deep nesting,
FIFOs with no writer, device files, files over the size limit, CSV fields over csv's own limit."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tuitune.core.data.formats import FormatError, read_file
from tuitune.core.data.store import Store

pytestmark = pytest.mark.timeout(300)

TUITUNE = [sys.executable, "-m", "tuitune.cli"]


def _import(project, path, *extra, timeout=30):
    return subprocess.run(TUITUNE + ["--project", str(project), "import", str(path), *extra], capture_output=True,
                          text=True, timeout=timeout, check=False)


def _assert_refused(res, project, *words):
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    for w in words:
        assert w in res.stderr, (w, res.stderr)
    if (project / "tuitune.db").exists():
        with Store.open(project) as st:
            assert st.count() == 0


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_deep_nesting_is_a_format_error(tmp_path, project, suffix):
    p = tmp_path / f"deep{suffix}"
    p.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(FormatError) as exc:
        read_file(p)
    assert "nested too deeply" in str(exc.value)
    _assert_refused(_import(project, p), project, str(p), "nested too deeply")


def test_fifo_without_writer_is_refused_not_waited_on(tmp_path, project):
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    res = _import(project, fifo, timeout=60)  # before the fix: hangs until the timeout
    _assert_refused(res, project, str(fifo), "not a regular file")


def test_dev_zero_is_refused(project):
    _assert_refused(_import(project, "/dev/zero", "--format", "alpaca", timeout=60), project, "/dev/zero",
                    "not a regular file")


def test_size_limit_and_override(tmp_path, project):
    p = tmp_path / "big.jsonl"
    line = '{"instruction": "q", "output": "a"}\n'
    p.write_text(line * 40_000)  # ~1.4 MB
    res = _import(project, p, "--max-size", "1M", timeout=120)
    _assert_refused(res, project, str(p), "larger than the import limit", "--max-size")
    with pytest.raises(FormatError, match="larger than the import limit") as exc:
        read_file(p, max_bytes=1_000_000)
    assert exc.value.remedy == "max_bytes" and "--" not in str(exc.value)  # the flag is the CLI's word
    ok = _import(project, p, "--max-size", "2M", timeout=120)
    assert ok.returncode == 0, ok.stderr
    with Store.open(project) as st:
        assert st.count() == 40_000


def test_bad_max_size_value(tmp_path, project):
    p = tmp_path / "a.jsonl"
    p.write_text('{"instruction": "q", "output": "a"}\n')
    res = _import(project, p, "--max-size", "lots")
    assert res.returncode == 2 and "Traceback" not in res.stderr and "--max-size" in res.stderr


def test_csv_field_over_csv_limit_is_a_format_error(tmp_path):
    p = tmp_path / "wide.csv"
    p.write_text("instruction,output\nq," + "x" * 200_000 + "\n")
    # A single long answer is legitimate data: it is imported (csv's 128 KiB field limit is lifted).
    parsed = read_file(p)
    assert len(parsed.samples) == 1 and len(parsed.samples[0].output) == 200_000


def test_csv_with_nul_bytes(tmp_path):
    p = tmp_path / "nul.csv"
    p.write_bytes(b"instruction,output\nq\x00,a\n")
    try:
        parsed = read_file(p)
    except FormatError as e:
        assert str(p) in str(e)
    else:
        assert len(parsed.samples) == 1
