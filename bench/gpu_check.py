"""Device check: the REAL tuitune training worker on a GPU, every method, a few steps each, in one run (< 8 min).

It builds a small random-weight Llama from a LlamaConfig (no download) and a tiny word-level tokenizer with a
ChatML chat template, trained on a fixed set of records written here (no model or data leaves this file); then,
for each method, `jobs.launch` starts the real worker (detached process, events.jsonl) for a few optimizer steps
on that set, merges on the GPU and runs the stop check there. It prints one row per method: steps, loss
first -> last (must fall), tokens/s (median of the step events after the first), peak GPU memory (the step
events' gpu_peak_gib), whether the merge happened on the GPU. Exit 1 if any method fails, 2 if the machine
lacks what the check needs.

Methods: lora, dora, full, dpo (LoRA adapter), and qlora where bitsandbytes imports with CUDA; with
`--methods lora+fsdp,full+fsdp,lora+zero3` also the sharded choices (`distributed`) on the one GPU (world size 1,
started under torchrun): their peak memory beside plain lora/full's. zero3 needs DeepSpeed on the device (it is
not in the carry: PyPI has it only as a source package); without it that row says so.

Here (no GPU), check the script itself:
    .venv/bin/python bench/gpu_check.py --cpu-smoke          # LoRA only, 2 steps, on the CPU (~1-2 min)

On a lent device (Python 3.12, CUDA torch, transformers, peft, accelerate, pandas, pyarrow there; no network, no
trl/datasets/pydantic/bitsandbytes/vLLM), one call (bench/gpu_carry.py says what travels and why):
  1. Here: `.venv/bin/python bench/gpu_check.py --prepare-carry --with pyarrow` downloads the wheels the device
     lacks for its Python into build/gpu-carry (git ignores build/, so it travels only when carried; 8.4 MB,
     bitsandbytes cut to its CUDA 13.0 library, plus an optional slimmed pyarrow, 33.5 MB) and prints the list
     with sizes; `--print-carry` prints it again, with the total against the 64 MiB one call takes (44 MB).
  2. run(carry=["build/gpu-carry"], timeout_s=540,
         command="PYTHONUNBUFFERED=1 python3 bench/gpu_check.py --carry build/gpu-carry")
     `--carry` pip-installs the wheels (no index, no dependencies) into a temp folder put first on sys.path and
     the worker's PYTHONPATH, checks every carried package's requirements and tuitune's against the machine
     (exit 2 naming what is missing or too old), prints where each package came from, then runs the check.
     Prepared `--with pyarrow` (44 MB in all), the carry also holds a slimmed pyarrow, installed only where the
     machine's is missing or older than datasets needs (>= 24): use that where one try must do.
The script puts the repository root on the worker's PYTHONPATH and makes the entries there absolute (the
worker runs in its run folder; tuitune need not be installed). A module still missing shows in the
failing method's worker.log tail, printed below its row.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "bench"):  # tuitune, and gpu_carry.py beside this script (also when loaded from a path)
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import gpu_carry  # bench/gpu_carry.py, found through the loop above

TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIALS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
COLOURS = ["red", "blue", "green", "yellow", "black", "white", "orange", "purple"]
THINGS = ["apple", "sky", "grass", "sun", "night", "snow", "carrot", "plum", "cherry", "ocean", "leaf",
          "banana", "coal", "cloud", "pumpkin", "grape"]
SYSTEM = "You answer with the colour of the thing asked about."


def sft_records() -> list[dict]:
    """16 fixed question/answer conversations: each thing has one colour (learnable by memorising)."""
    out = []
    for i, thing in enumerate(THINGS):
        colour = COLOURS[i % len(COLOURS)]
        out.append({"messages": [{"role": "system", "content": SYSTEM},
                                 {"role": "user", "content": f"what colour is the {thing} ?"},
                                 {"role": "assistant", "content": f"the {thing} is {colour} ."}]})
    return out


def dpo_records() -> list[dict]:
    """8 fixed preference pairs: the right colour is chosen, a wrong one rejected."""
    out = []
    for i, thing in enumerate(THINGS[:8]):
        right, wrong = COLOURS[i % len(COLOURS)], COLOURS[(i + 3) % len(COLOURS)]
        out.append({"prompt": [{"role": "user", "content": f"what colour is the {thing} ?"}],
                    "chosen": [{"role": "assistant", "content": f"the {thing} is {right} ."}],
                    "rejected": [{"role": "assistant", "content": f"the {thing} is {wrong} ."}]})
    return out


def build_model(folder: Path, cpu: bool) -> Path:
    """A random-weight Llama and a word-level tokenizer (with the chat template) saved in `folder`."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    split = pre_tokenizers.Whitespace()
    texts = [m["content"] for rec in sft_records() for m in rec["messages"]]
    texts += [m["content"] for p in dpo_records() for side in ("prompt", "chosen", "rejected") for m in p[side]]
    words = {w for t in texts for w, _ in split.pre_tokenize_str(t)} | {"system", "user", "assistant", *COLOURS}
    vocab = {t: i for i, t in enumerate(SPECIALS + sorted(words))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = split
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>",
                                  bos_token="<|im_start|>", eos_token="<|im_end|>",
                                  additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    tok.chat_template = TEMPLATE
    size = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,  # noqa: C408
                num_key_value_heads=2) if cpu else dict(hidden_size=512, intermediate_size=1408,  # noqa: C408
                                                        num_hidden_layers=4, num_attention_heads=8,
                                                        num_key_value_heads=4)
    config = LlamaConfig(vocab_size=len(tok), max_position_embeddings=256, tie_word_embeddings=True,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         **size)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def qlora_available() -> str:
    """'' when bitsandbytes imports and can use CUDA, else why not."""
    try:
        import bitsandbytes  # noqa: F401
        import torch

        torch.zeros(1, device="cuda").to(torch.float16)  # bnb's CUDA library loads lazily: touch a tensor op
        from bitsandbytes.functional import quantize_4bit

        quantize_4bit(torch.randn(64, 64, device="cuda", dtype=torch.float16), quant_type="nf4")
    except Exception as e:  # noqa: BLE001 - any failure here only means "skip QLoRA", shown in the table
        return f"{type(e).__name__}: {str(e)[:80]}"
    return ""


def run_method(method: str, settings, base: Path, data: Path, steps: int, device: str) -> dict:
    from tuitune.core.training import jobs
    from tuitune.core.training.config import TrainConfig

    method, _, distributed = method.partition("+")  # lora+fsdp: method lora, distributed fsdp
    lr = {"full": 3e-4, "dpo": 2e-3}.get(method, 2e-3)
    records = 8 if method == "dpo" else 16
    cfg = TrainConfig(method=method, base=str(base), data=str(data), max_steps=steps, epochs=100,
                      distributed=distributed or "ddp",
                      batch_size=records, learning_rate=lr, warmup_ratio=0.0, lr_scheduler="constant",
                      lora_r=16, holdout=0, save_steps=10_000, merge=True, check_prompts=1,
                      check_max_new_tokens=8, device=device, lora_dropout=0.0, early_stopping_patience=0)
    t0 = time.monotonic()
    run_id = jobs.launch(settings, cfg)
    d = settings.project / "runs" / run_id
    info = jobs.wait(d, timeout=420, poll=1)
    events = jobs.read_events(d)[0]
    steps_ev = [e for e in events if e["event"] == "step" and e.get("loss") is not None]
    merged = [e for e in events if e["event"] == "merged"]
    stops = [e for e in events if e["event"] == "check" and e.get("check") == "stops"]
    rates = [e["tokens_per_second"] for e in steps_ev[1:]] or [e["tokens_per_second"] for e in steps_ev]
    row = {"method": method + (f"+{distributed}" if distributed else ""), "status": info.status, "steps": len(steps_ev), "wall_s": time.monotonic() - t0,
           "loss_first": steps_ev[0]["loss"] if steps_ev else None,
           "loss_last": steps_ev[-1]["loss"] if steps_ev else None,
           "tok_s": statistics.median(rates) if rates else None,
           "peak_gib": max((e.get("gpu_peak_gib") or 0 for e in steps_ev), default=0) or None,
           "merge_device": stops[-1].get("device") if stops else None,
           "merged": bool(merged) and (d / "merged" / "config.json").exists(), "run": str(d)}
    problems = []
    if info.status != "done":
        problems.append(f"ended {info.status}: {info.error}")
    if len(steps_ev) < steps:
        problems.append(f"{len(steps_ev)} step events, expected {steps}")
    if row["loss_first"] is not None and not row["loss_last"] < row["loss_first"]:
        problems.append("loss did not fall")
    if not row["merged"]:
        problems.append("no merged model")
    elif row["merge_device"] != device:
        problems.append(f"merge/stop check ran on {row['merge_device']}, not {device}")
    row["problems"] = problems
    if problems:
        log = d / "worker.log"
        row["log_tail"] = log.read_text(errors="replace")[-2500:] if log.exists() else ""
    return row


def fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def print_table(rows: list[dict]) -> None:
    print(f"{'method':7} {'steps':>5} {'loss first -> last':>20} {'tok/s':>9} {'peak GPU':>9} {'merge':>10} "
          f"{'wall':>6}  result")
    for r in rows:
        loss = f"{fmt(r.get('loss_first'), '.3f')} -> {fmt(r.get('loss_last'), '.3f')}"
        merge = f"ok ({r['merge_device']})" if r.get("merged") else "no"
        peak = f"{r['peak_gib']:.2f} GiB" if r.get("peak_gib") else "-"
        verdict = "OK" if not r["problems"] else "FAIL: " + "; ".join(r["problems"])
        print(f"{r['method']:7} {r.get('steps', 0):5d} {loss:>20} {fmt(r.get('tok_s'), '.0f'):>9} {peak:>9} "
              f"{merge:>10} {fmt(r.get('wall_s'), '.0f'):>5}s  {verdict}", flush=True)


WORKER_DISTS = {"torch", "transformers", "peft", "accelerate", "trl", "datasets", "pydantic", "pydantic-settings",
                "pyyaml", "jinja2", "psutil", "tensorboard"}  # what the worker imports of tuitune's dependencies


def worker_requirements() -> list[str]:
    """tuitune's own requirements (pyproject.toml) on the packages the worker imports (not the app's others:
    huggingface_hub 2.x, say, is only needed for Hub IDs, which this check does not use)."""
    import tomllib
    from packaging.requirements import Requirement

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    return [r for r in deps if Requirement(r).name.lower().replace("_", "-") in WORKER_DISTS]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-smoke", action="store_true", help="LoRA only, 2 steps, on the CPU (checks the script).")
    ap.add_argument("--steps", type=int, help="Optimizer steps per method (default 8; 2 with --cpu-smoke).")
    ap.add_argument("--methods", help="Comma-separated subset of lora,dora,full,dpo,qlora, and the sharded "
                                      "lora+fsdp, full+fsdp, lora+zero3, full+zero3 (GPU only).")
    ap.add_argument("--work", type=Path, help="Folder for the model and runs (default: a new temp folder).")
    ap.add_argument("--json", action="store_true", help="Also print the rows as one JSON line at the end.")
    ap.add_argument("--print-carry", nargs="?", const=gpu_carry.DEFAULT_DIR, type=Path, metavar="DIR",
                    help="List what a device call must carry (default build/gpu-carry), sizes and total; exit.")
    ap.add_argument("--prepare-carry", nargs="?", const=gpu_carry.DEFAULT_DIR, type=Path, metavar="DIR",
                    help="Download and slim the wheels to carry into DIR (default build/gpu-carry); exit.")
    ap.add_argument("--with", dest="with_", action="append", default=[], choices=sorted(gpu_carry.OPTIONAL),
                    help="With --prepare-carry: also carry this (pyarrow: where the device's is older than 24).")
    ap.add_argument("--cuda", default="130", help="With --prepare-carry: the device torch's CUDA, as bitsandbytes "
                                                  "names its library (130 = CUDA 13.0, the lent machines').")
    ap.add_argument("--python", default=gpu_carry.PYTHON,
                    help="With --prepare-carry: the device's Python (default 3.12; 3.11 tries the carry here).")
    ap.add_argument("--carry", type=Path, metavar="DIR",
                    help="Install the prepared carry from DIR into a temp folder first (on the device).")
    args = ap.parse_args()
    if args.print_carry:
        print(gpu_carry.describe(args.print_carry))
        return 0
    if args.prepare_carry:
        gpu_carry.prepare(args.prepare_carry, cuda=args.cuda, extra=tuple(args.with_), python=args.python)
        print(gpu_carry.describe(args.prepare_carry))
        return 0
    site = gpu_carry.SITE
    if args.carry:  # before torch: it imports typing_extensions, which pydantic needs at >= 4.16
        t_inst = time.monotonic()
        extra = gpu_carry.install(args.carry, site, worker_requirements())
        print(f"carry: {len(list((args.carry / 'wheels').glob('*.whl')))} wheels from {args.carry} installed into "
              f"{site}{', and ' + ', '.join(extra) + ' (the machine lacks a fitting one)' if extra else ''} "
              f"({time.monotonic() - t_inst:.1f} s)", flush=True)
    problems = gpu_carry.unmet(site, worker_requirements()) if args.carry else []
    if problems:
        print("this machine lacks what the check needs:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2

    import torch
    import transformers

    cpu = args.cpu_smoke
    if not cpu and not torch.cuda.is_available():
        print(f"no CUDA GPU visible to torch {torch.__version__} (CUDA {torch.version.cuda}); on a machine "
              f"without one, run with --cpu-smoke", file=sys.stderr)
        return 2
    steps = args.steps or (2 if cpu else 8)
    methods = (args.methods or ("lora" if cpu else "lora,dora,full,dpo,qlora")).split(",")
    extra = [str(Path(p).resolve()) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *extra])  # the worker runs in its run folder
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import peft

    try:
        import trl
    except ImportError:
        print("trl is not importable: carry its wheel (see the top of this file)", file=sys.stderr)
        return 2
    if args.carry:
        print("from: " + gpu_carry.origins([("trl", "trl"), ("datasets", "datasets"), ("pydantic", "pydantic"),
                                            ("pydantic_settings", "pydantic-settings"), ("pyarrow", "pyarrow"),
                                            ("pandas", "pandas"), ("peft", "peft"), ("accelerate", "accelerate")]),
              flush=True)
    where = "CPU smoke" if cpu else f"{torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}"
    print(f"gpu_check: {where}; torch {torch.__version__}, transformers {transformers.__version__}, "
          f"peft {peft.__version__}, trl {trl.__version__}; {steps} steps per method", flush=True)

    from tuitune.settings import load_settings

    work = args.work or Path(tempfile.mkdtemp(prefix="tuitune-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "project").mkdir(exist_ok=True)
    settings = load_settings(project=work / "project", home=work / "home")
    t0 = time.monotonic()
    base = build_model(work / "tiny-llama", cpu)
    sft, dpo = work / "sft.jsonl", work / "dpo.jsonl"
    sft.write_text("".join(json.dumps(r) + "\n" for r in sft_records()), encoding="utf-8")
    dpo.write_text("".join(json.dumps(r) + "\n" for r in dpo_records()), encoding="utf-8")
    print(f"model: random-weight Llama in {base} ({time.monotonic() - t0:.1f} s)", flush=True)
    device = "cpu" if cpu else "cuda"
    rows = []
    for method in methods:
        if method == "qlora" and not cpu:
            why = qlora_available()
            if why:
                print(f"qlora: skipped, bitsandbytes does not work with CUDA here ({why})", flush=True)
                continue
        try:
            row = run_method(method, settings, base, dpo if method == "dpo" else sft, steps, device)
        except Exception as e:  # noqa: BLE001 - a launch refusal is this method's failure; the others still run
            row = {"method": method, "problems": [f"{type(e).__name__}: {e}"]}
        rows.append(row)
        print_table([row])
        if row.get("log_tail"):
            print(f"--- {method} worker.log (tail) ---\n{row['log_tail']}\n---", flush=True)
    print(f"\nsummary ({time.monotonic() - t0:.0f} s in all; tok/s = median of the step events after the first; "
          f"peak GPU = max gpu_peak_gib of the step events):")
    print_table(rows)
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "log_tail"} for r in rows]))
    failed = [r["method"] for r in rows if r["problems"]]
    print(f"{'FAILED: ' + ', '.join(failed) if failed else 'all methods OK'}; work folder: {work}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
