"""Export file safety: modes follow the umask (or the replaced file), symlinks are followed, device nodes and
FIFOs are refused with exit 2, and a bad dataset_info.json is reported before any data file is written."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from tuitune.core import atomic
from tuitune.core.data.export import ExportError, export
from tuitune.core.data.samples import Sample

TUITUNE = [sys.executable, "-m", "tuitune.cli"]


def cli(project, *args, umask=None):
    pre = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run([*TUITUNE, "--project", str(project), *args], capture_output=True, text=True,
                          check=False, preexec_fn=pre)


@pytest.fixture
def filled(project):
    src = project.parent / "seed.json"
    src.write_text(json.dumps([{"instruction": f"q{i}", "output": "a"} for i in range(8)]), encoding="utf-8")
    assert cli(project, "import", str(src)).returncode == 0
    return project


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_files_follow_umask_022(filled, tmp_path):
    out = tmp_path / "out"
    res = cli(filled, "export", "-o", str(out), "--test-size", "2", "--format", "alpaca", umask=0o022)
    assert res.returncode == 0, res.stderr
    assert {p.name: oct(mode(p)) for p in out.iterdir()} == {
        "train.json": "0o644", "test.json": "0o644", "dataset_info.json": "0o644"}
    res = cli(filled, "export", "-o", str(tmp_path / "private.json"), "--name", "p", umask=0o077)
    assert res.returncode == 0 and mode(tmp_path / "private.json") == 0o600


def test_replaced_file_keeps_its_mode(filled, tmp_path):
    target = tmp_path / "data.json"
    target.write_text("[]")
    target.chmod(0o640)
    assert cli(filled, "export", "-o", str(target), umask=0o077).returncode == 0
    assert mode(target) == 0o640 and len(json.loads(target.read_text())) == 8
    target.chmod(0o644)
    assert cli(filled, "export", "-o", str(target)).returncode == 0
    assert mode(target) == 0o644


def test_symlink_is_followed_and_target_replaced_atomically(filled, tmp_path):
    real = tmp_path / "store" / "real.json"
    real.parent.mkdir()
    real.write_text("old")
    real.chmod(0o644)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    res = cli(filled, "export", "-o", str(link))
    assert res.returncode == 0, res.stderr
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert len(json.loads(real.read_text())) == 8 and mode(real) == 0o644
    assert not list(real.parent.glob(".*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_fifo_at_output_is_refused(filled, tmp_path):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    res = cli(filled, "export", "-o", str(fifo))
    assert res.returncode == 2 and "is a FIFO (named pipe), not a regular file" in res.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert not (tmp_path / "dataset_info.json").exists()
    bare = tmp_path / "pipe"  # no suffix: not silently written as pipe.json
    os.mkfifo(bare)
    res = cli(filled, "export", "-o", str(bare))
    assert res.returncode == 2 and "FIFO" in res.stderr and not (tmp_path / "pipe.json.json").exists()


def test_symlink_to_fifo_and_fifo_as_dataset_info_are_refused(filled, tmp_path):
    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    (tmp_path / "l.json").symlink_to(fifo)
    res = cli(filled, "export", "-o", str(tmp_path / "l.json"))
    assert res.returncode == 2 and "the symlink" in res.stderr
    d = tmp_path / "d"
    d.mkdir()
    os.mkfifo(d / "dataset_info.json")
    res = cli(filled, "export", "-o", str(d / "x.json"))
    assert res.returncode == 2 and "dataset_info.json is a FIFO" in res.stderr
    assert not (d / "x.json").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a character device needs root")
def test_device_node_is_refused(filled, tmp_path):
    dev = tmp_path / "full.json"
    os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 7))  # a copy of /dev/full
    res = cli(filled, "export", "-o", str(dev))
    assert res.returncode == 2 and "is a device node" in res.stderr and "Traceback" not in res.stderr
    assert stat.S_ISCHR(os.stat(dev).st_mode)
    with pytest.raises(atomic.NotARegularFile):
        atomic.write_text(dev, "x")


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", "\xff\xfe"])
def test_bad_dataset_info_reported_before_any_data_file(store, tmp_path, content):
    store.add_samples([Sample(instruction=f"q{i}", output="a", status="accepted") for i in range(6)])
    (tmp_path / "dataset_info.json").write_bytes(content.encode("latin-1"))
    with pytest.raises(ExportError, match="nothing was written"):
        export(store, "alpaca", tmp_path / "data.json")
    with pytest.raises(ExportError, match="nothing was written"):
        export(store, "openai", tmp_path, test_size=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset_info.json", "proj"]


def test_entry_of_another_export_is_not_silently_replaced(store, tmp_path):
    store.add_samples([Sample(instruction=f"q{i}", output="a", status="accepted") for i in range(6)])
    export(store, "alpaca", tmp_path / "a.json")
    with pytest.raises(ExportError, match="the entry 'tuitune' already describes a.json"):
        export(store, "alpaca", tmp_path / "b.json")
    assert not (tmp_path / "b.json").exists()
    export(store, "sharegpt", tmp_path / "s.json", name="mine")
    with pytest.raises(ExportError, match="belongs to the entry 'mine'"):
        export(store, "openai", tmp_path / "s.json")
    assert "conversations" in (tmp_path / "s.json").read_text()
    export(store, "alpaca", tmp_path / "a.json")  # the same export again replaces its own entry
