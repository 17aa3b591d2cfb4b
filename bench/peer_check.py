"""Peer check: do tuitune's exports load, unchanged, in LLaMA-Factory, `datasets` and TRL? (Not part of `make test`.)

    .venv/bin/python bench/peer_check.py --llamafactory-python /work/lf-venv/bin/python \\
        --model ~/.cache/tuitune/models/smollm2-135m-instruct       # `tuitune models` shows the path

LLaMA-Factory pins older transformers/trl/peft/datasets, so it lives in its own venv, outside the repo. With a CPU
torch, PyPI's torchvision/torchaudio break it (it imports torchaudio unconditionally); this combination works:

    python3 -m venv /work/lf-venv
    /work/lf-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 torchaudio==2.11.1 llamafactory==0.9.5

What it does, with the real fixtures (../shared/fixtures/real): two projects made with the tuitune CLI, "plain"
(LLaMA-Factory's alpaca_en_demo, no system prompt or history anywhere; preference pairs from the DPO demo's
prompts without system/history) and "mixed" (a task system prompt, 200 en-demo records, and every prompt of the
DPO demo: some with their own system prompt, some with history, all with a chosen and a rejected answer). Each
is exported in every format, with and without a split (--test-size 0.1). Then every dataset_info.json entry is
loaded with LLaMA-Factory's own `get_dataset` (stage sft, or rm for ranking entries, as its DPO workflow does) in
the other venv, every file with `datasets.load_dataset("json")`, and TRL (this venv) trains one SFT step on the
openai export and one DPO step on the TRL pairs. A table says what loaded, and how many records LLaMA-Factory
kept (it drops records it cannot align, with a warning only).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "fixtures" / "real"
TASK_SYSTEM = "You are a careful assistant. Answer in plain English."
FORMATS = ("alpaca", "sharegpt", "openai", "dpo")

# Runs in LLaMA-Factory's venv: loads each (dataset_dir, entry, stage) with its own loader; one JSON line each.
LF_LOADER = r'''
import json, sys, tempfile, traceback
from llamafactory.hparams import get_train_args
from llamafactory.model import load_tokenizer
from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
model, jobs, system = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
for folder, entry, stage in jobs:
    out = {"folder": folder, "entry": entry, "stage": stage}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            args = {"stage": "dpo" if stage == "rm" else "sft", "model_name_or_path": model, "dataset": entry,
                    "dataset_dir": folder, "template": "smollm2", "cutoff_len": 2048, "output_dir": tmp,
                    "do_train": True, "overwrite_cache": True, "report_to": "none", "finetuning_type": "lora",
                    "per_device_train_batch_size": 1}
            model_args, data_args, training_args, finetuning_args, _ = get_train_args(args)
            tok = load_tokenizer(model_args)
            template = get_template_and_fix_tokenizer(tok["tokenizer"], data_args)
            ds = get_dataset(template, model_args, data_args, training_args, stage=stage, **tok)["train_dataset"]
            key = "chosen_input_ids" if stage == "rm" else "input_ids"
            texts = [tok["tokenizer"].decode(ds[i][key]) for i in range(len(ds))]
            out.update(ok=True, rows=len(ds), system_seen=sum(system in t for t in texts))
    except BaseException as e:
        out.update(ok=False, error=f"{type(e).__name__}: {e}"[:300], tb=traceback.format_exc()[-800:])
    print("RESULT " + json.dumps(out), flush=True)
'''


def tuitune(project: Path, *args: str) -> str:
    res = subprocess.run([sys.executable, "-m", "tuitune.cli", "--project", str(project), *args],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"tuitune {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout


def make_projects(work: Path, fixtures: Path) -> dict[str, Path]:
    """The two projects, built with the CLI from the real fixtures."""
    en = json.loads((fixtures / "llamafactory_alpaca_en_demo.json").read_text(encoding="utf-8"))
    dpo = json.loads((fixtures / "llamafactory_dpo_en_demo.json").read_text(encoding="utf-8"))

    def pairs_as_sharegpt(records, answer):  # a chosen/rejected answer as the last turn of the conversation
        out = []
        for r in records:
            conv = [m for m in r["conversations"] if m["from"] != "system"] + [r[answer]]
            rec = {"conversations": conv}
            if r["conversations"][0]["from"] == "system":
                rec["system"] = r["conversations"][0]["value"]
            out.append(rec)
        return out

    plain_dpo = [r for r in dpo if len(r["conversations"]) == 1]
    projects = {}
    for name, alpaca, pairs, system in (("plain", en, plain_dpo, None), ("mixed", en[:200], dpo, TASK_SYSTEM)):
        p = work / name
        tuitune(p, "init", *(["--system", system] if system else []))
        files = {"sft.json": alpaca, "chosen.json": pairs_as_sharegpt(pairs, "chosen"),
                 "rejected.json": pairs_as_sharegpt(pairs, "rejected")}
        for fname, recs in files.items():
            (work / f"{name}-{fname}").write_text(json.dumps(recs, ensure_ascii=False), encoding="utf-8")
        tuitune(p, "import", str(work / f"{name}-sft.json"))
        tuitune(p, "import", str(work / f"{name}-chosen.json"))
        tuitune(p, "import", str(work / f"{name}-rejected.json"), "--as", "pending")
        _reject_pending(p)  # the rejected answers become rejected samples: preference pairs with the chosen
        projects[name] = p
    return projects


def _reject_pending(project: Path) -> None:
    from tuitune.core.data import review
    from tuitune.core.data.store import Store

    with Store.open(project) as store:
        for s in store.samples(status="pending"):
            review.reject(store, s.id, "the DPO demo's rejected answer")


def export_all(projects: dict[str, Path], work: Path) -> list[dict]:
    """Every format, with and without a split; returns one row per written data file."""
    out = []
    for pname, p in projects.items():
        for fmt in FORMATS:
            for split in (False, True):
                dest = work / "exports" / pname / (f"{fmt}-split" if split else fmt)
                dest.mkdir(parents=True)
                tuitune(p, "export", "--format", fmt, "-o", str(dest if split else dest / "data"),
                        *(["--test-size", "0.1"] if split else []))
                info = json.loads((dest / "dataset_info.json").read_text(encoding="utf-8"))
                for entry, spec in info.items():
                    out.append({"project": pname, "format": fmt, "split": split, "folder": str(dest),
                                "entry": entry, "file": str(dest / spec["file_name"]),
                                "stage": "rm" if spec.get("ranking") else "sft"})
                for trl in sorted(dest.glob("*.trl.jsonl")):
                    out.append({"project": pname, "format": "trl-pairs", "split": split, "folder": str(dest),
                                "entry": None, "file": str(trl), "stage": None})
    return out


def count_records(path: Path) -> int:
    text = path.read_text(encoding="utf-8")
    return sum(1 for line in text.splitlines() if line.strip()) if path.suffix == ".jsonl" else len(json.loads(text))


def run_llamafactory(lf_python: str, model: str, rows: list[dict]) -> None:
    jobs = [[r["folder"], r["entry"], r["stage"]] for r in rows if r["entry"]]
    res = subprocess.run([lf_python, "-c", LF_LOADER, model, json.dumps(jobs), TASK_SYSTEM], capture_output=True,
                         text=True, check=False)
    got = {}
    for line in res.stdout.splitlines():
        if line.startswith("RESULT "):
            r = json.loads(line[7:])
            got[(r["folder"], r["entry"])] = r
    for r in rows:
        if r["entry"]:
            r["lf"] = got.get((r["folder"], r["entry"]),
                              {"ok": False, "error": f"loader ended ({res.returncode}): {res.stderr[-300:]}"})


def run_datasets(rows: list[dict]) -> None:
    from datasets import load_dataset

    for r in rows:
        try:
            ds = load_dataset("json", data_files=r["file"], split="train")
            r["datasets"] = {"ok": True, "rows": len(ds)}
        except Exception as e:  # noqa: BLE001 - reported in the table
            r["datasets"] = {"ok": False, "error": f"{type(e).__name__}: {e}"[:200]}


def run_trl(rows: list[dict], model: str, work: Path) -> None:
    """One SFT step (openai file) and one DPO step (TRL pairs) per project: batch of 2 records, CPU, fp32."""
    from datasets import load_dataset
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    common = {"max_steps": 1, "per_device_train_batch_size": 2, "use_cpu": True, "bf16": False,
              "gradient_checkpointing": False, "report_to": "none", "save_strategy": "no", "logging_steps": 1}
    for i, r in enumerate(rows):
        # one step each: SFT on the whole-file openai export, DPO on the split's train pairs (both projects)
        if not ((r["format"] == "openai" and not r["split"]) or
                (r["format"] == "trl-pairs" and r["split"] and Path(r["file"]).name.startswith("train."))):
            continue
        t0 = time.time()
        try:
            ds = load_dataset("json", data_files=r["file"], split="train").select(range(2))
            if r["format"] == "openai":
                trainer = SFTTrainer(model=model, train_dataset=ds,
                                     args=SFTConfig(output_dir=str(work / f"trl{i}"), max_length=512, **common))
            else:
                trainer = DPOTrainer(model=model, train_dataset=ds,
                                     args=DPOConfig(output_dir=str(work / f"trl{i}"), max_length=512, **common))
            loss = trainer.train().training_loss
            r["trl"] = {"ok": True, "what": "SFT" if r["format"] == "openai" else "DPO", "loss": round(loss, 3),
                        "s": round(time.time() - t0, 1)}
        except Exception as e:  # noqa: BLE001 - reported in the table
            r["trl"] = {"ok": False, "error": f"{type(e).__name__}: {e}"[:200]}


def cell(res: dict | None, expected: int | None = None) -> str:
    if res is None:
        return "-"
    if not res["ok"]:
        return "FAIL " + res["error"].splitlines()[0]
    if "rows" in res:
        text = f"ok {res['rows']}" + ("" if expected in (None, res["rows"]) else f" of {expected} (DROPPED)")
        return text + (f", system {res['system_seen']}" if "system_seen" in res else "")
    return f"ok {res['what']} 1 step, loss {res['loss']} ({res['s']} s)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llamafactory-python", required=True, help="python of a venv with llamafactory installed")
    ap.add_argument("--model", required=True, help="a local chat model folder (the embedded model's)")
    ap.add_argument("--fixtures", type=Path, default=REAL)
    ap.add_argument("--no-trl", action="store_true", help="skip the TRL training steps")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    args = ap.parse_args()
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="peer-check-") as d:
        work = Path(d)
        rows = export_all(make_projects(work, args.fixtures), work)
        for r in rows:
            r["records"] = count_records(Path(r["file"]))
        run_llamafactory(args.llamafactory_python, str(Path(args.model).expanduser()), rows)
        run_datasets(rows)
        if args.json:  # kept even if the training steps below fail
            args.json.write_text(json.dumps(rows, indent=1, ensure_ascii=False), encoding="utf-8")
        if not args.no_trl:
            run_trl(rows, str(Path(args.model).expanduser()), work)
    print("| project | format | split | file | entry (LLaMA-Factory stage) | records | LLaMA-Factory get_dataset "
          "(kept, with task system) | datasets.load_dataset('json') | TRL |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        entry = f"{r['entry']} ({r['stage']})" if r["entry"] else "-"
        print(f"| {r['project']} | {r['format']} | {'yes' if r['split'] else 'no'} | {Path(r['file']).name} | "
              f"{entry} | {r['records']} | {cell(r.get('lf'), r['records'])} | "
              f"{cell(r.get('datasets'), r['records'])} | {cell(r.get('trl'))} |")
    fails = [r for r in rows for k in ("lf", "datasets", "trl") if r.get(k) and not r[k]["ok"]]
    dropped = [r for r in rows if r.get("lf", {}).get("ok") and r["lf"]["rows"] != r["records"]]
    print(f"\n{len(rows)} files, {len(fails)} failures, {len(dropped)} files with records dropped by LLaMA-Factory "
          f"({time.time() - t0:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, ensure_ascii=False), encoding="utf-8")
    sys.exit(1 if fails or dropped else 0)


if __name__ == "__main__":
    main()
