"""Every hostile input and fault of issue 13 against a scratch project, each through the real CLI in a
subprocess; prints one table row per case: input -> exit code, first line of the message, traceback yes/no,
data intact yes/no. Not part of `make test`; bounded to a few minutes.

    .venv/bin/python bench/hostile.py [--only WORD] [--keep]

TUITUNE_HOME points at a private home whose models/ links to the real prepared one (nothing is converted
again). The OpenAI-compatible teacher is tests/fake_teacher.py (HTML, cut-off bodies, brace floods on demand).
"Data intact" means: the project's rows (samples, reviews, rounds) are what they should be after the case
(unchanged for a refused input; for a damaged database, its bytes unchanged), and no run folder appeared
for a refused training config.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
TUITUNE = [sys.executable, "-m", "tuitune.cli"]


@dataclass
class Row:
    case: str
    rc: int | str
    message: str
    traceback: bool
    intact: bool | None  # None: not applicable


CASES: list = []
PROGRESS = re.compile(r"\d+% +\d+:\d\d:\d\d\s*$")  # a progress bar's line, not a message
SCRATCH: list[Path] = []  # the scratch folder, shown as $TMP in messages


def case(name: str):
    def deco(fn):
        CASES.append((name, fn))
        return fn
    return deco


class Env:
    def __init__(self, root: Path, real_home: Path):
        self.root = root
        self.home = root / "home"
        self.home.mkdir()
        (self.home / "models").symlink_to(real_home / "models", target_is_directory=True)
        self.template = root / "template"
        self.n = 0
        self.env = {**os.environ, "TUITUNE_HOME": str(self.home), "PYTHONUNBUFFERED": "1"}
        self.env.pop("TUITUNE_TEACHER_BASE_URL", None)
        self.env.pop("TUITUNE_SESSION", None)
        from tuitune.core.data.samples import Sample
        from tuitune.core.data.store import Store

        with Store.open(self.template) as st:
            st.set_task(description="Explain made-up words.", system_prompt="You explain words.")
            st.add_samples([Sample(f"Explain the word zorb{i}", f"Zorb{i} is a small blue thing number {i}.",
                                   origin="seed", status="accepted") for i in range(16)])
            st.add_samples([Sample(f"What is quib{i}?", f"Quib{i} is a tool.", origin="synth") for i in range(3)])
            st.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def project(self) -> Path:
        self.n += 1
        p = self.root / f"p{self.n}"
        shutil.copytree(self.template, p)
        return p

    def run(self, project: Path, *args: str, timeout: float = 90, **kw) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(TUITUNE + ["--project", str(project), *args], capture_output=True, text=True,
                                  timeout=timeout, env=kw.pop("env", self.env), stdin=subprocess.DEVNULL,
                                  check=False, **kw)
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            return subprocess.CompletedProcess(e.cmd, f"hung>{timeout:.0f}s", out, "")


def fingerprint(project: Path) -> str:
    db = project / "tuitune.db"
    if not db.is_file():
        return "dir" if db.is_dir() else "none"
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        h = hashlib.sha256()
        for table in ("samples", "reviews", "rounds"):
            for row in conn.execute(f"SELECT * FROM {table} ORDER BY id"):
                h.update(repr(row).encode())
        conn.close()
        return h.hexdigest()
    except sqlite3.DatabaseError:
        return hashlib.sha256(db.read_bytes()).hexdigest()


def row(name: str, res, intact: bool | None) -> Row:
    text = (res.stderr or "") + "\n" + (res.stdout or "")
    lines = [ln.strip() for ln in (res.stderr or "").splitlines() + (res.stdout or "").splitlines()
             if ln.strip() and not PROGRESS.search(ln)]
    first = next((ln for ln in lines if ln.startswith("error:")), lines[0] if lines else "")
    first = first.replace(str(SCRATCH[0]), "$TMP") if SCRATCH else first
    return Row(name, res.returncode, first[:110], "Traceback (most recent call last)" in text, intact)


def unchanged(env: Env, name: str, *args: str, project: Path | None = None, timeout: float = 90) -> Row:
    p = project or env.project()
    before = fingerprint(p)
    res = env.run(p, *args, timeout=timeout)
    return row(name, res, fingerprint(p) == before)


# ---- import ---------------------------------------------------------------------------------------------

@case("import: JSON nested 100k deep")
def _deep(env):
    f = env.root / "deep.json"
    f.write_text("[" * 100_000 + "]" * 100_000)
    return unchanged(env, "import deep.json", "import", str(f))


@case("import: FIFO with no writer")
def _fifo(env):
    f = env.root / "pipe.jsonl"
    os.mkfifo(f)
    return unchanged(env, "import FIFO", "import", str(f), timeout=30)


@case("import: /dev/zero")
def _zero(env):
    return unchanged(env, "import /dev/zero", "import", "/dev/zero", "--format", "alpaca", timeout=30)


@case("import: over the size limit")
def _big(env):
    f = env.root / "big.jsonl"
    f.write_text('{"instruction": "q", "output": "a"}\n' * 50_000)
    return unchanged(env, "import 1.8 MB file, --max-size 1M", "import", str(f), "--max-size", "1M")


# ---- the project database -------------------------------------------------------------------------------

def _damage(env, kind: str, args: list[str], label: str) -> Row:
    p = env.project()
    db = p / "tuitune.db"
    if kind == "random":
        db.write_bytes(os.urandom(65536))
    elif kind == "truncated":
        db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    else:
        db.unlink()
        db.mkdir()
    return unchanged(env, f"tuitune.db {kind}: {label}", *args, project=p)


for _kind in ("random", "truncated", "directory"):
    case(f"db {_kind}: stats")(lambda env, k=_kind: _damage(env, k, ["stats"], "stats"))
case("db random: review --accept")(lambda env: _damage(env, "random", ["review", "--accept", "1"], "review --accept"))
case("db random: synth --rounds")(lambda env: _damage(env, "random", ["synth", "--rounds"], "synth --rounds"))
case("db random: the app's start")(lambda env: _damage(env, "random", [], "tuitune (the app)"))


# ---- synthesis ------------------------------------------------------------------------------------------

def _synth(env, mode: str, label: str, n: int = 6, delay: float = 0.0) -> Row:
    import fake_teacher as fake

    p = env.project()
    proc, url = fake.spawn("--mode", mode, "--delay", str(delay))
    try:
        res = env.run(p, "synth", "--n", str(n), "--base-url", url, "--model", "fake", "--per-request", "2",
                      "--concurrency", "2", "--timeout", "10", "--retries", "0")
    finally:
        proc.kill()
        proc.wait()
    return row(label, res, _rounds_ok(p))


def _rounds_ok(p: Path) -> bool:
    conn = sqlite3.connect(p / "tuitune.db")
    ok = True
    for status, counters in conn.execute("SELECT status, counters FROM rounds"):
        c = json.loads(counters)
        ok &= status != "running" and c["requests"] == c["responses"] + c["failed_requests"] + c["cancelled_requests"]
        ok &= conn.execute("SELECT COUNT(*) FROM samples WHERE origin = 'synth' AND round_id IS NOT NULL"
                           ).fetchone()[0] == c["stored"]
    conn.close()
    return ok


case("synth: 200 + HTML body, always")(lambda env: _synth(env, "html", "synth vs HTML-only endpoint"))
case("synth: 200 + cut-off JSON body, always")(lambda env: _synth(env, "cutbody", "synth vs cut-off bodies"))
case("synth: HTML/cut/non-chat/brace mix")(lambda env: _synth(env, "hostile", "synth vs mixed hostile replies"))
case("synth: 200k-char brace replies")(lambda env: _synth(env, "braces", "synth vs 200k '{' replies"))


@case("synth: kill -9 mid-round, counters")
def _kill(env):
    import fake_teacher as fake

    p = env.project()
    proc, url = fake.spawn("--mode", "ok", "--delay", "0.5")
    try:
        cmd = TUITUNE + ["--project", str(p), "synth", "--n", "20", "--base-url", url, "--model", "fake",
                         "--per-request", "1", "--concurrency", "4"]
        first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env.env)
        deadline = time.monotonic() + 60
        while _count(p, "synth") < 7 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.05)
        time.sleep(0.2)
        first.send_signal(signal.SIGKILL)
        first.wait()
        conn = sqlite3.connect(p / "tuitune.db")
        c = json.loads(conn.execute("SELECT counters FROM rounds").fetchone()[0])
        conn.close()
        adds_up = c["requests"] == c["responses"] + c["failed_requests"] + c["cancelled_requests"]
        res = env.run(p, "synth", "--n", "20", "--base-url", url, "--model", "fake", "--concurrency", "4")
    finally:
        proc.kill()
        proc.wait()
    r = row("synth killed -9, then resumed", res, adds_up and _rounds_ok(p))
    r.message = f"after kill: requests {c['requests']} = {c['responses']}+{c['failed_requests']}+" \
                f"{c['cancelled_requests']}; resumed: {r.message}"[:110]
    return r


def _count(p: Path, origin: str | None = None) -> int:
    conn = sqlite3.connect(p / "tuitune.db", timeout=10)
    n = conn.execute("SELECT COUNT(*) FROM samples" + (" WHERE origin = ?" if origin else ""),
                     (origin,) if origin else ()).fetchone()[0]
    conn.close()
    return n


# ---- contention -----------------------------------------------------------------------------------------

@case("import 60k records + review --accept at once")
def _contention(env):
    p = env.project()
    f = env.root / "60k.jsonl"
    with f.open("w") as out:
        for i in range(60_000):
            out.write(json.dumps({"instruction": f"Question {i} about {i * 7919 % 104729}",
                                  "output": f"Answer {i}. " * 4}) + "\n")
    imp = subprocess.Popen(TUITUNE + ["--project", str(p), "import", str(f)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=env.env)
    time.sleep(4)  # parsing done, staging under way
    t0 = time.monotonic()
    res = env.run(p, "review", "--accept", "17")
    took = time.monotonic() - t0
    _, imp_err = imp.communicate(timeout=240)
    ok = imp.returncode == 0 and _count(p) == 60_019
    conn = sqlite3.connect(p / "tuitune.db")
    ok &= conn.execute("SELECT status FROM samples WHERE id = 17").fetchone()[0] == "accepted"
    conn.close()
    r = row("review --accept during a 60k import", res, ok)
    r.message = f"saved after {took:.1f} s: {r.message}"[:110]
    r.traceback |= "Traceback" in imp_err
    return r


@case("review --undo from another terminal")
def _undo(env):
    p = env.project()
    env.run(p, "review", "--accept", "17")
    res = subprocess.run(TUITUNE + ["--project", str(p), "review", "--undo"], capture_output=True, text=True,
                         env=env.env, start_new_session=True, check=False, timeout=60)
    conn = sqlite3.connect(p / "tuitune.db")
    kept = conn.execute("SELECT status FROM samples WHERE id = 17").fetchone()[0] == "accepted"
    conn.close()
    return row("review --undo, other session", res, kept)


# ---- training (validation before any folder exists) -----------------------------------------------------

TRAIN_SETS = ["batch_size=0", "micro_batch_size=0", "lora_r=[1,2", "lora_r=-1", "lora_r=0", "learning_rate=-1",
              "warmup_ratio=5", "epochs=-1", "lora_dropout=2", "save_steps=0", "num_threads=-3",
              "lr_scheduler=nonsense", "holdout=100", "grad_accum=0", "beta=-1"]


def _train(env, setting: str) -> Row:
    p = env.project()
    args = ["train", "--set", setting] + (["--method", "dpo"] if setting.startswith("beta") else [])
    res = env.run(p, *args, timeout=120)
    runs = [d for d in (p / "runs").iterdir()] if (p / "runs").is_dir() else []
    _stop_workers(p)
    return row(f"train --set {setting}", res, not runs and res.returncode != 0)


def _stop_workers(p: Path) -> None:
    """Kill any worker a bad config still started for this scratch project (by pid, its own processes)."""
    import psutil

    for proc in psutil.process_iter(["pid", "cmdline"]):
        with_p = any(str(p) in part for part in (proc.info.get("cmdline") or []))
        if with_p and proc.pid != os.getpid():
            try:
                proc.kill()
            except psutil.Error:
                pass


for _s in TRAIN_SETS:
    case(f"train --set {_s}")(lambda env, s=_s: _train(env, s))


@case("train --resume without checkpoints")
def _resume(env):
    p = env.project()
    rid = "20260101-000000-lora"
    d = p / "runs" / rid
    d.mkdir(parents=True)
    dry = env.run(p, "train", "--dry-run", "--json")
    (d / "config.yaml").write_text(json.loads(dry.stdout)["config_yaml"] if dry.returncode == 0 else "{}\n")
    (d / "events.jsonl").write_text(json.dumps({"event": "start", "time": 1.0}) + "\n")
    res = env.run(p, "train", "--resume", rid, timeout=120)
    _stop_workers(p)
    return row("train --resume (checkpoints deleted)", res, res.returncode != 0)


# ---- events.jsonl ---------------------------------------------------------------------------------------

@case("events.jsonl garbage: runs / runs --json")
def _events(env):
    p = env.project()
    d = p / "runs" / "20260101-000000-lora"
    d.mkdir(parents=True)
    dry = env.run(p, "train", "--dry-run", "--json")
    (d / "config.yaml").write_text(json.loads(dry.stdout)["config_yaml"] if dry.returncode == 0 else "{}\n")
    (d / "events.jsonl").write_bytes(b'null\n[1,2,3]\n{"event": "step"}\n{"event": "step", "step": 1, "loss": "abc"}\n'
                                     b'\xff\xfe garbage\n{"event": "done", "time": 2')
    rows = []
    for args in (["runs"], ["runs", "--json"]):
        res = env.run(p, *args)
        rows.append(row(f"events.jsonl garbage: {' '.join(args)}", res, res.returncode == 0))
    worst = next((r for r in rows if r.traceback or r.rc != 0), rows[-1])
    return worst


# ---- export ---------------------------------------------------------------------------------------------

@case("export to a FIFO")
def _export_fifo(env):
    p = env.project()
    out = env.root / "out-fifo.jsonl"
    os.mkfifo(out)
    r = unchanged(env, "export -o FIFO", "export", "-o", str(out), project=p, timeout=30)
    r.intact &= out.is_fifo()
    return r


@case("export to a device node")
def _export_dev(env):
    p = env.project()
    out = env.root / "full-copy"
    try:
        os.mknod(out, 0o666 | __import__("stat").S_IFCHR, os.makedev(1, 7))  # a copy of /dev/full
    except PermissionError:
        return Row("export -o device node", "skipped", "mknod needs root", False, None)
    r = unchanged(env, "export -o copy of /dev/full", "export", "-o", str(out), project=p, timeout=30)
    r.intact &= out.is_char_device()
    return r


# ---- teachers.yaml --------------------------------------------------------------------------------------

def _teachers(env, text: str, label: str) -> Row:
    (env.home / "teachers.yaml").write_text(text)
    try:
        return unchanged(env, label, "synth", "--list-teachers")
    finally:
        (env.home / "teachers.yaml").unlink()


case("teachers.yaml not YAML")(lambda env: _teachers(env, "teachers: [1, 2\n", "teachers.yaml broken: --list-teachers"))
case("teachers.yaml teachers: [1,2,3]")(lambda env: _teachers(env, "teachers: [1, 2, 3]\n",
                                                                 "teachers: [1,2,3]: --list-teachers"))


# ---- chat and the app -----------------------------------------------------------------------------------

@case("chat --api-key on the command line")
def _chat_key(env):
    p = env.project()
    res = subprocess.run(TUITUNE + ["--project", str(p), "chat", "--url", "http://127.0.0.1:9/v1", "--api-key",
                                    "SECRET", "x"], input="/quit\n", capture_output=True, text=True, env=env.env,
                         timeout=60, check=False)
    return row("chat --api-key KEY (argv)", res, "SECRET" not in res.stdout + res.stderr)


@case("app F5 with a broken teachers.yaml")
def _tui_teachers(env):
    return Row("app: F5 with broken teachers.yaml", "skipped", "a TUI key press: the lead's Pilot test covers it",
               False, None)


# ---- serving --------------------------------------------------------------------------------------------

@case("serve: routes without the key")
def _serve(env):
    return Row("serve: /invocations etc. without key", "skipped", "needs a vLLM start (~1 min): covered by the "
               "serving engineer's route-table test", False, None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help="run only cases whose name contains one of these (comma-separated)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    a = ap.parse_args()
    from tuitune.settings import Settings

    root = Path(tempfile.mkdtemp(prefix="tuitune-hostile-"))
    SCRATCH.append(root)
    env = Env(root, Settings().home)
    rows: list[Row] = []
    t0 = time.monotonic()
    try:
        for name, fn in CASES:
            if a.only and not any(w in name for w in a.only.split(",")):
                continue
            try:
                rows.append(fn(env))
            except Exception as e:  # noqa: BLE001 - the bench must finish and show what broke
                rows.append(Row(name, "bench error", f"{type(e).__name__}: {e}"[:110], False, None))
            print(f"  {time.monotonic() - t0:6.1f}s  {name}", file=sys.stderr, flush=True)
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    yn = {True: "yes", False: "no", None: "n/a"}
    print("| input | exit | message (first line) | traceback | data intact |")
    print("|---|---|---|---|---|")
    for r in rows:
        msg = r.message.replace("|", "\\|")
        print(f"| {r.case} | {r.rc} | {msg} | {yn[r.traceback]} | {yn[r.intact]} |")
    tb = sum(r.traceback for r in rows)
    lost = sum(r.intact is False for r in rows)
    print(f"\n{len(rows)} cases in {time.monotonic() - t0:.0f} s: {tb} with a traceback, {lost} with data not intact "
          f"(or a bad config accepted).")


if __name__ == "__main__":
    main()
