"""What bench/gpu_check.py carries to a lent GPU machine: the list, the prepared folder, its install and its check.

The lent machine (docs/gpus.md, ../shared/DESIGN.md, the device notes' package list) has Python 3.12, CUDA torch,
transformers, peft, accelerate, pandas, pyarrow, tensorboard, xxhash, fsspec, pyyaml, jinja2, psutil; it lacks
trl, datasets (and its dill, multiprocess), pydantic (and its core, annotated-types, typing-inspection),
pydantic-settings (and python-dotenv) and bitsandbytes, and has no network. A device call carries 64 MiB with the
working tree. So the carry is only those wheels, for cp312 manylinux x86-64, at the versions this venv runs (the
ones the CPU smoke here checks), plus typing-extensions (pydantic needs >= 4.16, the device's may be older), with
bitsandbytes cut to the one CUDA library the device's torch loads (its wheel holds eleven: 43 MB -> ~2 MB).
pyarrow and pandas stay behind (the device has them; datasets needs pyarrow >= 24, which the preflight checks);
`--with pyarrow` adds a slimmed pyarrow (no Flight, S3, headers, tests or duplicate libraries) to folder/optional,
installed on the device only where the machine's own is missing or too old for what the carry needs.

Found by tracing a --cpu-smoke run's imports (PYTHONPROFILEIMPORTTIME=1, main process and worker.log) and
subtracting the device's packages.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIR = ROOT / "build" / "gpu-carry"
# Where the carried wheels are installed. The path must contain "site-packages": dill (datasets' fingerprints)
# pickles a module found anywhere else by value, and a carried pyarrow then fails ("Can't pickle <class
# 'MonthDayNano'>"), measured with /tmp/tuitune-carry-site.
SITE = Path(tempfile.gettempdir()) / "tuitune-carry" / "site-packages"
LIMIT = 64 << 20  # bytes one device call takes: working tree + carried paths
PYTHON = "3.12"  # the device's python3 (3.12.3)
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "any"]

# (distribution, why it travels)
CARRY: list[tuple[str, str]] = [
    ("trl", "SFT/DPO trainers (the worker)"),
    ("datasets", "trl's data (Dataset.from_list, map)"),
    ("dill", "datasets"),
    ("multiprocess", "datasets"),
    ("pydantic", "tuitune's settings and TrainConfig"),
    ("pydantic-core", "pydantic (an exact pair)"),
    ("annotated-types", "pydantic"),
    ("typing-inspection", "pydantic"),
    ("typing-extensions", "pydantic needs >= 4.16"),
    ("pydantic-settings", "tuitune.settings"),
    ("python-dotenv", "pydantic-settings"),
    ("bitsandbytes", "QLoRA (only the CUDA library the device's torch loads)"),
]
OPTIONAL: dict[str, str] = {"pyarrow": "datasets needs >= 24 (slimmed)"}

# Members dropped from a wheel (fnmatch on the path inside it); {cuda} is the device torch's CUDA, e.g. 130.
SLIM: dict[str, dict] = {
    "bitsandbytes": {"drop": ["bitsandbytes/libbitsandbytes_*.so"],
                     "keep": ["bitsandbytes/libbitsandbytes_cuda{cuda}.so", "bitsandbytes/libbitsandbytes_cpu.so"]},
    "pyarrow": {"drop": ["pyarrow/include/*", "pyarrow/tests/*", "pyarrow/src/*", "*.pyx", "*.pxd", "*.pxi",
                         "pyarrow/*flight*", "pyarrow/*s3*", "pyarrow/_pyarrow_cpp_tests*", "pyarrow/_azurefs*",
                         "pyarrow/_gcsfs*", "pyarrow/_hdfs*", "pyarrow/libarrow_python*.so",
                         "pyarrow/libarrow_python*.so.*.*.*", "pyarrow/interchange/tests/*"],
                "keep": []},
}


def versions(names: list[str]) -> dict[str, str]:
    """The version of each distribution in this venv (what the CPU smoke here runs)."""
    import importlib.metadata as md

    out = {}
    for n in names:
        try:
            out[n] = md.version(n)
        except md.PackageNotFoundError:
            raise SystemExit(f"{n} is not installed in this venv ({sys.executable}); `make` installs it") from None
    return out


def slim_wheel(src: Path, dst: Path, drop: list[str], keep: list[str]) -> tuple[int, int]:
    """Copy wheel `src` to `dst` without the members matching `drop` (unless they match `keep`), RECORD fixed.
    Returns (members kept, members dropped)."""
    kept = dropped = 0
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zout:
        names = zin.namelist()
        gone = {n for n in names if any(fnmatch.fnmatch(n, p) for p in drop)
                and not any(fnmatch.fnmatch(n, p) for p in keep)}
        for name in names:
            if name in gone:
                dropped += 1
                continue
            data = zin.read(name)
            if name.endswith(".dist-info/RECORD"):
                data = "".join(line + "\n" for line in data.decode().splitlines()
                               if line.split(",", 1)[0] not in gone).encode()
            zout.writestr(zin.getinfo(name), data)
            kept += 1
    return kept, dropped


def prepare(folder: Path, cuda: str = "130", extra: tuple[str, ...] = (), python: str = PYTHON) -> dict:
    """Download the carry's wheels for the device (cp312, manylinux x86-64) into folder/wheels, slim the heavy
    ones, and write folder/carry.json (the list with sizes). Replaces an earlier folder atomically. `python`:
    another Python's wheels (3.11 to try the carry with this venv's Python here)."""
    names = [n for n, _ in CARRY] + [n for n in extra]
    unknown = [n for n in extra if n not in OPTIONAL]
    if unknown:
        raise SystemExit(f"--with takes {', '.join(OPTIONAL)}, not {', '.join(unknown)}")
    pins = versions(names)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".gpu-carry-", dir=folder.parent))
    try:
        raw, wheels, optional = tmp / "download", tmp / "wheels", tmp / "optional"
        wheels.mkdir()
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
               python, "--implementation", "cp", "--abi", "cp" + python.replace(".", ""), "-d", str(raw)]
        for p in PLATFORMS:
            cmd += ["--platform", p]
        subprocess.run(cmd + [f"{n}=={v}" for n, v in pins.items()], check=True)
        rows = []
        for whl in sorted(raw.glob("*.whl")):
            dist = next(n for n in names if whl.name.lower().startswith(n.replace("-", "_").lower() + "-"))
            out = optional if dist in OPTIONAL else wheels
            out.mkdir(exist_ok=True)
            rule = SLIM.get(dist)
            note = ""
            if rule:
                keep = [k.format(cuda=cuda) for k in rule["keep"]]
                kept, dropped = slim_wheel(whl, out / whl.name, rule["drop"], keep)
                note = f"slimmed from {whl.stat().st_size / 1e6:.1f} MB ({dropped} of {kept + dropped} files dropped)"
            else:
                shutil.copy2(whl, out / whl.name)
            why = dict(CARRY).get(dist) or OPTIONAL[dist]
            rows.append({"dist": dist, "version": pins[dist], "file": f"{out.name}/{whl.name}",
                         "bytes": (out / whl.name).stat().st_size, "why": why, "note": note,
                         "optional": dist in OPTIONAL})
        missing = set(names) - {r["dist"] for r in rows}
        if missing:
            raise SystemExit(f"pip found no wheel for {', '.join(sorted(missing))}")
        shutil.rmtree(raw)
        manifest = {"python": python, "cuda": cuda, "wheels": rows, "bytes": sum(r["bytes"] for r in rows)}
        (tmp / "carry.json").write_text(json.dumps(manifest, indent=1) + "\n")
        old = folder.with_name(folder.name + ".old")
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def tree_bytes() -> int:
    """Bytes of what a device call sends besides the carry: tracked and untracked-not-ignored files."""
    out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "-co", "--exclude-standard"],
                         capture_output=True, check=True).stdout.decode().split("\0")
    return sum((ROOT / p).stat().st_size for p in out if p and (ROOT / p).is_file())


def describe(folder: Path) -> str:
    """The carry's list (what, why, size) and the total against the 64 MiB one call takes."""
    lines = []
    manifest_path = folder / "carry.json"
    if not manifest_path.exists():
        lines.append(f"not prepared yet ({folder}); `python bench/gpu_check.py --prepare-carry` downloads it. "
                     f"It will hold (the versions this venv runs):")
        for dist, why in CARRY:
            lines.append(f"  {dist:18} {why}")
        return "\n".join(lines)
    m = json.loads(manifest_path.read_text())
    lines.append(f"carry {folder} (for Python {m['python']}, bitsandbytes' CUDA {m['cuda']} library):")
    for r in m["wheels"]:
        lines.append(f"  {r['dist']:18} {r['version']:10} {r['bytes'] / 1e6:6.2f} MB  {r['why']}"
                     f"{'; ' + r['note'] if r['note'] else ''}"
                     f"{'; installed only where needed' if r.get('optional') else ''}")
    tree = tree_bytes()
    total = m["bytes"] + tree
    lines.append(f"wheels {m['bytes'] / 1e6:.2f} MB + working tree {tree / 1e6:.2f} MB = {total / 1e6:.2f} MB of "
                 f"{LIMIT / 1e6:.2f} MB (64 MiB) one call takes: {100 * total / LIMIT:.0f}%"
                 f"{'' if total < LIMIT else '  TOO LARGE'}")
    return "\n".join(lines)


def install(folder: Path, site: Path, also: list[str] = ()) -> list[str]:
    """pip-install the carried wheels into `site` (no index, no dependencies) and put it first on sys.path and
    PYTHONPATH (the worker inherits it); then each optional wheel (folder/optional) whose distribution `unmet`
    names (missing or too old here for the carry or `also`). Returns the optional ones installed. Run before
    anything imports pydantic or typing_extensions."""
    wheels = sorted((folder / "wheels").glob("*.whl"))
    if not wheels:
        raise SystemExit(f"no wheels in {folder / 'wheels'}: prepare the carry here first "
                         f"(`python bench/gpu_check.py --prepare-carry`)")
    _pip_install(wheels, site)
    sys.path.insert(0, str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, os.environ.get("PYTHONPATH", "").split(
        os.pathsep))])
    short = {name for name, _ in _unmet(site, also)}
    needed = [w for w in sorted((folder / "optional").glob("*.whl")) if _canon(w.name.split("-")[0]) in short]
    if needed:
        _pip_install(needed, site)
    return [w.name.split("-")[0] for w in needed]


def _pip_install(wheels: list[Path], site: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--disable-pip-version-check", "--upgrade", "--target", str(site), *map(str, wheels)], check=True)


def _canon(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def unmet(site: Path, also: list[str] = ()) -> list[str]:
    """Requirements of the carried distributions (and `also`, requirement strings) that the machine does not meet:
    each as words naming what is missing or too old and who needs it."""
    return sorted({words for _, words in _unmet(site, also)})


def _unmet(site: Path, also: list[str]) -> list[tuple[str, str]]:
    """(distribution, words) for each requirement not met; see unmet."""
    import importlib
    import importlib.metadata as md

    from packaging.requirements import Requirement

    importlib.invalidate_caches()
    wanted = [(Requirement(r), "tuitune") for r in also]
    for dist in md.distributions(path=[str(site)]):
        for r in dist.requires or []:
            req = Requirement(r)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                wanted.append((req, f"{dist.metadata['Name']} {dist.version}"))
    out = []
    for req, who in wanted:
        try:
            have = md.version(req.name)
        except md.PackageNotFoundError:
            out.append((_canon(req.name), f"{req.name} is missing ({who} needs {req})"))
            continue
        if req.specifier and not req.specifier.contains(have, prereleases=True):
            out.append((_canon(req.name), f"{req.name} {have} is here, {who} needs {req}"))
    return out


def origins(names: list[str]) -> str:
    """Where each module was imported from (the carry or the machine), e.g. 'trl 1.16.0 (carry)'."""
    import importlib
    import importlib.metadata as md

    site = str(SITE) if str(SITE) in sys.path else None
    out = []
    for mod, dist in names:
        try:
            m = importlib.import_module(mod)
        except ImportError as e:
            out.append(f"{mod}: not importable ({e})")
            continue
        where = "carry" if site and str(getattr(m, "__file__", "")).startswith(site) else "machine"
        out.append(f"{dist} {md.version(dist)} ({where})")
    return ", ".join(out)

