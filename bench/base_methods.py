"""Does every training method work on a base model? A couple of real steps per method, through the real CLI.

For a base (`--base`, default gemma3-270m) and each method of `--methods` (default lora,qlora,qlora-int8,dora,full,
dpo; kto and orpo are accepted too), one after the other, each in a fresh temporary project:

    tuitune --project P train --base B --method M --data FILE --max-steps 2 --set batch_size=4 --set lora_r=4
            --set check_prompts=1 --set check_max_new_tokens=8 --foreground

(`qlora-int8` is `--method qlora --set quant=int8`; `qlora` is nf4.) The data: the 8 shortest real K8s EN->ZH pairs
of ../shared/fixtures/real/k8s_docs_en_zh.jsonl (shortest by characters of en + zh), as bench/learned.py's k8s set
builds them (instruction "Translate the following English text to Chinese", input = en, output = zh, the seed's
system prompt). SFT methods get them as {"messages": [...]} JSONL; preference methods (dpo/kto/orpo) get the same
prompts as pairs with chosen = the real zh translation and rejected = the English text left untranslated (a copy
of the input: the failure a translator should learn to avoid).

Prints one table: method, status (done, or failed/interrupted with the first line of the error), the loss of each
step, seconds (CLI start -> exit), the worker's peak RSS (VmHWM of the worker process, read from /proc while it
runs), the adapter file's size and whether merged/config.json exists, whether the adapter's safetensors keys are all
LoRA/DoRA tensors (no embedding or head saved), and whether merged/ keeps the base's license file (GEMMA_TERMS.html
for gemma3-270m). Exits 1 if any method did not finish `done` (the worker.log tail of each failure is printed),
or finished with an adapter holding other tensors or a merged folder without the base's license files.

    nice -n 10 .venv/bin/python bench/base_methods.py                      # gemma3-270m, the six default methods
    .venv/bin/python bench/base_methods.py --methods dpo,kto,orpo --keep   # keep the temporary projects
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learned import K8S_FILE, REAL, k8s_rows, sample_of

METHODS = {  # name in the table -> (method, extra --set overrides)
    "lora": ("lora", []), "qlora": ("qlora", ["quant=nf4"]), "qlora-int8": ("qlora", ["quant=int8"]),
    "dora": ("dora", []), "full": ("full", []), "dpo": ("dpo", []), "kto": ("kto", []), "orpo": ("orpo", []),
}
DEFAULT_METHODS = "lora,qlora,qlora-int8,dora,full,dpo"
PREFERENCE = ("dpo", "kto", "orpo")
N_PAIRS = 8
COMMON_SETS = ["batch_size=4", "lora_r=4", "check_prompts=1", "check_max_new_tokens=8"]
LORA_KEY_PARTS = ("lora_A", "lora_B", "lora_magnitude_vector", "lora_embedding_A", "lora_embedding_B")


def shortest_rows(n: int = N_PAIRS) -> list[dict]:
    rows = k8s_rows(REAL / K8S_FILE)
    return sorted(rows, key=lambda r: len(r["input"]) + len(r["output"]))[:n]


def write_data(rows: list[dict], method: str, path: Path) -> None:
    out = []
    for r in rows:
        messages = sample_of(r).to_messages()
        if method in PREFERENCE:
            prompt = [m for m in messages if m["role"] != "assistant"]
            out.append({"prompt": prompt, "chosen": [{"role": "assistant", "content": r["output"]}],
                        "rejected": [{"role": "assistant", "content": r["input"]}]})
        else:
            out.append({"messages": messages})
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in out), encoding="utf-8")


def vm_hwm_kb(pid: int) -> int | None:
    """The process's peak resident set (VmHWM, kB) so far, or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def run_method(name: str, base: str, rows: list[dict], root: Path, timeout: float) -> dict:
    method, extra = METHODS[name]
    project = root / name
    project.mkdir(parents=True)
    data = project.parent / f"{name}.jsonl"
    write_data(rows, method, data)
    cmd = [sys.executable, "-m", "tuitune.cli", "--project", str(project), "train", "--base", base,
           "--method", method, "--data", str(data), "--max-steps", "2"]
    for s in COMMON_SETS + extra:
        cmd += ["--set", s]
    cmd.append("--foreground")
    print(f"\n== {name}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_kb, pid = 0, None
    runs = project / "runs"
    while proc.poll() is None:  # VmHWM is the kernel's own high-water mark: polling only has to catch it alive
        if pid is None:
            pid_files = list(runs.glob("*/worker.pid")) if runs.is_dir() else []
            if pid_files:
                try:
                    pid = int(pid_files[0].read_text().strip())
                except ValueError:
                    pid = None
        if pid is not None:
            peak_kb = max(peak_kb, vm_hwm_kb(pid) or 0)
        if time.monotonic() - t0 > timeout:
            proc.kill()
            break
        time.sleep(0.5)
    stdout, stderr = proc.communicate()
    seconds = time.monotonic() - t0
    res = {"name": name, "seconds": seconds, "rc": proc.returncode, "peak_mb": peak_kb / 1024 if peak_kb else None}
    run_id = stdout.strip().splitlines()[0] if stdout.strip() else ""
    d = runs / run_id if run_id else None
    if d is None or not (d / "config.yaml").is_file():
        res.update(status="failed", error=(stderr.strip().splitlines() or ["no run id printed"])[-1], losses=[])
        return res
    from tuitune.core.training import jobs

    info = jobs.run_info(d)
    events = jobs.read_events(d)[0]
    res["status"] = info.status
    res["error"] = (info.error or "").strip().splitlines()[0] if info.error else ""
    res["losses"] = [e["loss"] for e in events if e["event"] == "step" and "loss" in e]
    stops = next((e for e in events if e["event"] == "check" and e.get("check") == "stops"), {})
    res["stops"] = stops.get("details", "")
    res.update(adapter_facts(d / "adapter"))
    res["merged"] = (d / "merged" / "config.json").is_file()
    base_path = Path(base_path_of(d))
    license_files = [p.name for p in base_path.glob("*TERMS*")] or [p.name for p in base_path.glob("LICENSE*")]
    res["license"] = ({f: (d / "merged" / f).is_file() for f in license_files}
                      if res["merged"] and license_files else {})
    res["log_tail"] = (d / "worker.log").read_text(errors="replace")[-2500:] if info.status != "done" else ""
    return res


def base_path_of(d: Path) -> str:
    from tuitune.core.training.config import TrainConfig

    return TrainConfig.load(d / "config.yaml").base_path


def adapter_facts(adapter: Path) -> dict:
    f = adapter / "adapter_model.safetensors"
    if not f.is_file():
        return {"adapter_mb": None, "lora_only": None, "other_keys": []}
    from safetensors import safe_open

    with safe_open(str(f), framework="pt") as st:
        keys = list(st.keys())
    other = [k for k in keys if not any(p in k for p in LORA_KEY_PARTS)]
    return {"adapter_mb": f.stat().st_size / 1e6, "lora_only": not other, "other_keys": other, "n_keys": len(keys)}


def table(results: list[dict]) -> str:
    head = ["method", "status", "losses", "s", "peak RSS", "adapter / merged", "LoRA-only keys", "terms kept"]
    lines = []
    for r in results:
        status = r["status"] if r["status"] == "done" else f"{r['status']}: {r.get('error', '')[:90]}"
        losses = " ".join(f"{x:.3f}" for x in r.get("losses", [])) or "-"
        rss = f"{r['peak_mb'] / 1024:.2f} GB" if r.get("peak_mb") else "?"
        if r.get("adapter_mb") is not None:
            ad = f"{r['adapter_mb']:.2f} MB"
        else:
            ad = "no adapter"
        ad += " / merged" if r.get("merged") else " / no merged"
        if r.get("lora_only") is None:
            lo = "-"
        else:
            lo = f"yes ({r['n_keys']} keys)" if r["lora_only"] else f"NO: {', '.join(r['other_keys'][:3])}"
        lic = r.get("license") or {}
        terms = ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in lic.items()) or "-"
        lines.append([r["name"], status, losses, f"{r['seconds']:.0f}", rss, ad, lo, terms])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
    fmt = lambda row: " | ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip()
    return "\n".join([fmt(head), "-+-".join("-" * w for w in widths), *map(fmt, lines)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default="gemma3-270m", help="Any name `tuitune train --base` takes.")
    ap.add_argument("--methods", default=DEFAULT_METHODS, help=f"Comma-separated, of {', '.join(METHODS)}.")
    ap.add_argument("--timeout", type=float, default=1800, help="Seconds per method before it is killed.")
    ap.add_argument("--keep", action="store_true", help="Keep the temporary projects (their path is printed).")
    args = ap.parse_args(argv)
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    if bad := [m for m in names if m not in METHODS]:
        ap.error(f"--methods: unknown {', '.join(bad)} (known: {', '.join(METHODS)})")
    rows = shortest_rows()
    print(f"base {args.base}; {len(rows)} shortest pairs of {K8S_FILE} ({min(len(r['input']) for r in rows)}-"
          f"{max(len(r['input']) for r in rows)} English chars); preference pairs: chosen = the zh translation, "
          f"rejected = the English input untranslated; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} "
          f"CPUs", flush=True)
    root = Path(tempfile.mkdtemp(prefix="tuitune-base-methods-"))
    t0 = time.monotonic()
    results = []
    try:
        for name in names:
            r = run_method(name, args.base, rows, root, args.timeout)
            results.append(r)
            print(f"{name}: {r['status']} in {r['seconds']:.0f} s, losses {r.get('losses')}, stop check: "
                  f"{r.get('stops') or '-'}", flush=True)
            if r["status"] != "done" and r.get("log_tail"):
                print(f"--- {name} worker.log (tail) ---\n{r['log_tail']}\n---", flush=True)
    finally:
        if args.keep:
            print(f"projects kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\n{args.base}, {len(rows)} K8s pairs, 2 steps each; wall time {time.monotonic() - t0:.0f} s\n")
    print(table(results))
    failed = [r["name"] for r in results if r["status"] != "done"]
    unkept = [r["name"] for r in results if r.get("lora_only") is False or not all((r.get("license") or {}).values())]
    if unkept:
        print(f"\nchecks failed (adapter keys beyond LoRA, or license files not in merged/): {', '.join(unkept)}")
    return 0 if not failed and not unkept else 1


if __name__ == "__main__":
    sys.exit(main())
