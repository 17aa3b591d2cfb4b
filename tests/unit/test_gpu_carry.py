"""bench/gpu_carry.py: what a lent GPU machine gets carried. A slimmed wheel must still install (its RECORD lists
exactly the files it holds), and the preflight must name a requirement the machine does not meet, before the
device's minutes go to a check that cannot run."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import bench_scripts
import pytest


@pytest.fixture(scope="module")
def carry():
    return bench_scripts.load("gpu_carry")


def _wheel(path: Path, name: str, files: dict[str, bytes], requires: list[str] = (), version: str = "1.0") -> Path:
    info = f"{name}-{version}.dist-info"
    meta = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
            + "".join(f"Requires-Dist: {r}\n" for r in requires))
    members = {**files, f"{info}/METADATA": meta.encode(),
               f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{n},,\n" for n in members) + f"{info}/RECORD,,\n"
    whl = path / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
        z.writestr(f"{info}/RECORD", record)
    return whl


def test_slimmed_wheel_drops_files_keeps_the_named_library_and_installs(carry, tmp_path):
    src = _wheel(tmp_path, "bnbfake", {"bnbfake/__init__.py": b"", "bnbfake/libx_cuda118.so": b"a" * 100,
                                       "bnbfake/libx_cuda130.so": b"b", "bnbfake/libx_cpu.so": b"c"})
    out = tmp_path / "slim"
    out.mkdir()
    kept, dropped = carry.slim_wheel(src, out / src.name, ["bnbfake/libx_*.so"],
                                     ["bnbfake/libx_cuda130.so", "bnbfake/libx_cpu.so"])
    assert (kept, dropped) == (6, 1)
    with zipfile.ZipFile(out / src.name) as z:
        names = set(z.namelist())
        record = z.read("bnbfake-1.0.dist-info/RECORD").decode()
    assert "bnbfake/libx_cuda118.so" not in names and "bnbfake/libx_cuda130.so" in names
    assert "libx_cuda118" not in record and "libx_cuda130" in record
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--target", str(site),
                    str(out / src.name)], check=True)
    assert sorted(p.name for p in (site / "bnbfake").iterdir()) == ["__init__.py", "libx_cpu.so", "libx_cuda130.so"]


def test_preflight_names_what_is_missing_or_too_old(carry, tmp_path):
    import packaging

    site = tmp_path / "site"
    whl = _wheel(tmp_path, "needy", {"needy/__init__.py": b""},
                 ["packaging>=999", "no-such-dist-tuitune-test", "pytest", 'other-missing; extra == "dev"'])
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--target", str(site),
                    str(whl)], check=True)
    problems = carry.unmet(site, ["pytest>=1"])
    assert problems == sorted([f"packaging {packaging.__version__} is here, needy 1.0 needs packaging>=999",
                               "no-such-dist-tuitune-test is missing (needy 1.0 needs no-such-dist-tuitune-test)"])
    assert carry.unmet(site / "nothing-here", ["pytest>=1"]) == []


def test_an_optional_wheel_is_installed_only_where_the_machine_lacks_a_fitting_one(carry, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", "")
    folder = tmp_path / "carry"
    (folder / "wheels").mkdir(parents=True)
    (folder / "optional").mkdir()
    _wheel(folder / "wheels", "needy_tt", {"needy_tt/__init__.py": b""}, ["optfake-tt>=2"])
    _wheel(folder / "optional", "optfake_tt", {"optfake_tt/__init__.py": b""}, version="2.0")
    _wheel(folder / "optional", "pytest", {"pytest_fake_tt/__init__.py": b""})  # the machine has a pytest
    site = tmp_path / "site-packages"
    assert carry.install(folder, site) == ["optfake_tt"]
    assert (site / "optfake_tt").is_dir() and not (site / "pytest_fake_tt").exists()
    assert sys.path[0] == str(site) and str(site) in os.environ["PYTHONPATH"]
    assert carry.unmet(site) == []
