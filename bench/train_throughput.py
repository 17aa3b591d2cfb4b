"""Trained tokens per second, three ways, same data, same model, same LoRA, one run, side by side:

1. baseline: a seed-style HF Trainer script as beginners write it (chat template rendered to text, padded to
   max_length, labels = input_ids with padding masked, Trainer defaults on CPU);
2. plain TRL: SFTTrainer with its defaults (bf16 requested, gradient checkpointing on, dynamic padding);
3. tuitune: the real worker (`jobs.launch`, detached process, events) with its CPU defaults: one unpadded record
   per forward pass with gradients accumulated to the batch, logits computed only at trained (assistant)
   positions, bf16 autocast only where the CPU has native bf16 and a probe measured it faster, no gradient
   checkpointing.

Each trains one epoch over the same N records (so every way sees the same tokens) with the same batch size
and LoRA settings. "Trained tokens" = non-padding tokens fed to the model; the time is the trainer's
train_runtime. Prints both ratios; targets: >= 2.5x the baseline and >= 1.3x plain TRL.

    .venv/bin/python bench/train_throughput.py --samples 16 --batch 4
    .venv/bin/python bench/train_throughput.py --ways tuitune --set bf16=true   # one lever at a time
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tuitune.settings import load_settings

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "real"


def load_records(path: Path, n: int, seed: int) -> list[dict]:
    from tuitune.core.data.formats import read_file

    samples = read_file(path).samples
    random.Random(seed).shuffle(samples)
    return [{"messages": s.to_messages()} for s in samples[:n]]


def lora_config(r: int):
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")


def run_baseline(model_dir: Path, records: list[dict], batch: int, r: int, max_length: int, out: Path) -> dict:
    import torch
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    tok = AutoTokenizer.from_pretrained(model_dir)
    texts = [tok.apply_chat_template(rec["messages"], tokenize=False) for rec in records]
    ds = Dataset.from_dict({"text": texts}).map(
        lambda b: tok(b["text"], padding="max_length", truncation=True, max_length=max_length),
        batched=True, remove_columns=["text"])
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), lora_config(r))
    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=batch, num_train_epochs=1,
                             learning_rate=2e-4, logging_steps=1, report_to=[], use_cpu=True, save_strategy="no",
                             disable_tqdm=True, include_num_input_tokens_seen="non_padding")
    trainer = Trainer(model=model, args=args, train_dataset=ds,
                      data_collator=DataCollatorForLanguageModeling(tok, mlm=False))
    m = trainer.train().metrics
    return {"seconds": m["train_runtime"], "tokens": trainer.state.num_input_tokens_seen,
            "fed_tokens": len(records) * max_length}


def run_trl(model_dir: Path, records: list[dict], batch: int, r: int, max_length: int, out: Path) -> dict:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(output_dir=str(out), per_device_train_batch_size=batch, num_train_epochs=1,
                     learning_rate=2e-4, logging_steps=1, report_to=[], use_cpu=True, save_strategy="no",
                     disable_tqdm=True, include_num_input_tokens_seen="non_padding", max_length=max_length)
    trainer = SFTTrainer(model=str(model_dir), args=args, train_dataset=Dataset.from_list(records),
                         peft_config=lora_config(r))
    m = trainer.train().metrics
    return {"seconds": m["train_runtime"], "tokens": trainer.state.num_input_tokens_seen,
            "bf16": args.bf16, "gradient_checkpointing": args.gradient_checkpointing}


def run_tuitune(records: list[dict], batch: int, r: int, work: Path, overrides: dict | None = None) -> dict:
    from tuitune.core.training import jobs
    from tuitune.core.training.config import TrainConfig

    data = work / "bench-data.jsonl"
    data.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in records), encoding="utf-8")
    project = work / "project"
    project.mkdir()
    cfg = TrainConfig(method="lora", data=str(data), epochs=1, batch_size=batch, lora_r=r, learning_rate=2e-4,
                      holdout=0, merge=False).updated(**(overrides or {}))
    run_id = jobs.launch(load_settings(project=project), cfg)
    d = project / "runs" / run_id
    info = jobs.wait(d, timeout=3600, poll=2)
    if info.status != "done":
        sys.exit(f"tuitune run {run_id} ended {info.status}: {info.error}\nrun folder kept: {d}\n"
                 f"{(d / 'worker.log').read_text()[-3000:]}")
    done = [e for e in jobs.read_events(d)[0] if e["event"] == "done"][-1]
    model = [e for e in jobs.read_events(d)[0] if e["event"] == "model"][-1]
    return {"seconds": done["metrics"]["train_runtime"], "tokens": done["metrics"]["num_input_tokens_seen"],
            "run": str(d), "records_per_pass": model.get("records_per_pass"), "precision": model.get("precision")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REAL / "llamafactory_alpaca_zh_demo.json")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=1024, help="Baseline padding length (and TRL's limit).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                    help="Override a field of tuitune's run config (YAML value), e.g. --set bf16=false "
                         "--set micro_batch_size=4, to see what each setting is worth.")
    ap.add_argument("--ways", default="baseline,trl,tuitune", help="Comma-separated subset to run (ratios need all).")
    ap.add_argument("--phase", choices=["baseline", "trl"], help=argparse.SUPPRESS)  # internal: one way, JSON out
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    from tuitune.core.models import resolve
    from tuitune.settings import Settings

    model_dir = resolve(Settings().models_dir, "smollm2-135m-instruct")
    records = load_records(args.data, args.samples, args.seed)
    if args.phase:  # a child process: run one way and print its result as the last line
        fn = run_baseline if args.phase == "baseline" else run_trl
        res = fn(model_dir, records, args.batch, args.rank, args.max_length, args.work / args.phase)
        print("RESULT " + json.dumps(res), flush=True)
        return

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    lengths = [len(tok(tok.apply_chat_template(r["messages"], tokenize=False))["input_ids"]) for r in records]
    print(f"data: {args.data.name}, {len(records)} records, tokens mean {sum(lengths) / len(lengths):.0f} "
          f"min {min(lengths)} max {max(lengths)}; batch {args.batch}; LoRA r={args.rank} all-linear; "
          f"{(len(records) + args.batch - 1) // args.batch} steps each; each way in its own process", flush=True)
    results = {}
    work = Path(tempfile.mkdtemp(prefix="tuitune-bench-"))
    for name in args.ways.split(","):
        t0 = time.monotonic()
        if name == "tuitune":
            import yaml

            overrides = {k: yaml.safe_load(v) for k, _, v in (o.partition("=") for o in args.overrides)}
            res = run_tuitune(records, args.batch, args.rank, work, overrides)
        else:  # a separate process, so each way starts with the memory the others used given back
            cmd = [sys.executable, __file__, "--phase", name, "--work", str(work), "--data", str(args.data),
                   "--samples", str(args.samples), "--batch", str(args.batch), "--rank", str(args.rank),
                   "--max-length", str(args.max_length), "--seed", str(args.seed)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
            if out.returncode != 0 or not lines:
                sys.exit(f"{name} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
            res = json.loads(lines[-1][len("RESULT "):])
        res["tok_per_s"] = res["tokens"] / res["seconds"]
        results[name] = res
        extra = {k: v for k, v in res.items() if k not in ("tokens", "seconds", "tok_per_s", "run")}
        print(f"{name:9} {res['tokens']:7d} trained tokens in {res['seconds']:7.1f} s = "
              f"{res['tok_per_s']:7.1f} tok/s   (wall {time.monotonic() - t0:.0f} s)  {extra}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    if len(results) < 3:
        return
    vs_base = results["tuitune"]["tok_per_s"] / results["baseline"]["tok_per_s"]
    vs_trl = results["tuitune"]["tok_per_s"] / results["trl"]["tok_per_s"]
    print(f"tuitune / baseline = {vs_base:.2f}x (target >= 2.5x)  {'OK' if vs_base >= 2.5 else 'BELOW TARGET'}")
    print(f"tuitune / plain TRL = {vs_trl:.2f}x (target >= 1.3x)  {'OK' if vs_trl >= 1.3 else 'BELOW TARGET'}")


if __name__ == "__main__":
    main()
