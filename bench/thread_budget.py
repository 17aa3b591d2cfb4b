"""Training tokens/s alone vs beside a busy CPU vLLM server, with the CPU thread budget off and on, in one run.

Three phases, each the REAL worker (`jobs.launch`, detached process) training LoRA on the embedded model over
the same records (default: the first 12 records of llamafactory_alpaca_en_demo.json of at most 600 characters,
batch 2 = 6 optimizer steps):

  (a) alone: nothing else of this app runs (the budget gives the libraries' defaults: nothing to share);
  (b) beside a busy server, budget OFF: a real `VLLMServer` on the embedded model answers `--streams` concurrent
      chat requests in a loop, and the worker starts on torch's default threads, as before the budget existed
      (the budget is switched off here by giving `jobs` an empty list of running processes: it then sees
      nothing to share with);
  (c) the same server and load, budget ON: what tuitune does now (`resources.running()` finds the server, the
      worker gets OMP_NUM_THREADS / TUITUNE_TRAIN_THREADS = cores / 2).

The server is started as the app starts it when it is the first process (alone: vLLM's own defaults) and is
the same one in (b) and (c). Only this run's server counts as "running" (other users' processes on a shared
machine are left out of the plan, so the phases differ only in the budget). Prints trained tokens/s
(num_input_tokens_seen / train_runtime of the `done` event), the server's generated tokens/s during each phase,
the threads the worker got, the load average, and the ratios.

    .venv/bin/python bench/thread_budget.py                  # ~6-10 min on 2 cores
    .venv/bin/python bench/thread_budget.py --records 8 --streams 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
REAL = ROOT.parent / "shared" / "fixtures" / "real"
BUDGET_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TUITUNE_TRAIN_THREADS")


class Load:
    """`streams` threads sending chat requests in a loop; counts generated tokens (usage.completion_tokens)."""

    def __init__(self, endpoint, prompts: list[str], streams: int, max_tokens: int):
        from openai import OpenAI

        self.client = OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key, timeout=300, max_retries=0)
        self.model, self.prompts, self.max_tokens = endpoint.model, prompts, max_tokens
        self.stop = threading.Event()
        self.tokens = 0
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(streams)]

    def _loop(self, i: int) -> None:
        k = i
        while not self.stop.is_set():
            try:
                r = self.client.chat.completions.create(
                    model=self.model, max_tokens=self.max_tokens, temperature=0.8,
                    messages=[{"role": "user", "content": self.prompts[k % len(self.prompts)]}])
                with self.lock:
                    self.tokens += r.usage.completion_tokens if r.usage else 0
            except Exception as e:  # noqa: BLE001 - reported after the run; the load goes on
                self.errors.append(f"{type(e).__name__}: {e}"[:200])
                time.sleep(1)
            k += len(self.threads)

    def start(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def count(self) -> tuple[float, int]:
        with self.lock:
            return time.monotonic(), self.tokens

    def end(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=120)


def train(settings, data: Path, batch: int, holders_fn) -> dict:
    """One real worker run; `holders_fn` is what `jobs` sees as already running (the budget's input)."""
    import psutil

    from tuitune.core import resources
    from tuitune.core.training import jobs
    from tuitune.core.training.config import TrainConfig

    cfg = TrainConfig(method="lora", data=str(data), epochs=1, batch_size=batch, lora_r=8, learning_rate=2e-4,
                      holdout=0, merge=False, check_prompts=0, save_steps=10_000, early_stopping_patience=0)
    real = resources.running
    resources.running = holders_fn
    try:
        run_id = jobs.launch(settings, cfg)
    finally:
        resources.running = real
    d = settings.project / "runs" / run_id
    env = {}
    try:
        env = psutil.Process(int((d / "worker.pid").read_text())).environ()
    except (psutil.Error, OSError, ValueError):
        pass
    info = jobs.wait(d, timeout=1800, poll=1)
    if info.status != "done":
        sys.exit(f"run {run_id} ended {info.status}: {info.error}\n{(d / 'worker.log').read_text()[-3000:]}")
    done = [e for e in jobs.read_events(d)[0] if e["event"] == "done"][-1]
    m = done["metrics"]
    return {"tokens": m["num_input_tokens_seen"], "seconds": m["train_runtime"],
            "tok_s": m["num_input_tokens_seen"] / m["train_runtime"], "steps": done["step"],
            "threads": {k: env[k] for k in BUDGET_ENV if k in env} or "defaults"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REAL / "llamafactory_alpaca_en_demo.json")
    ap.add_argument("--records", type=int, default=12, help="The first N records of --data (see --max-chars).")
    ap.add_argument("--max-chars", type=int, default=600,
                    help="Skip records longer than this (instruction + input + output characters), so a phase "
                         "takes a minute or two even on a loaded 2-core machine; 0: keep all.")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--streams", type=int, default=4, help="Concurrent chat requests looping on the server.")
    ap.add_argument("--max-tokens", type=int, default=64, help="Tokens per chat answer.")
    args = ap.parse_args()

    dropped = {k: os.environ.pop(k) for k in BUDGET_ENV if k in os.environ}  # (b) must see the libraries' defaults
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p)
    import psutil

    from tuitune.core import hardware, resources
    from tuitune.core.data.formats import read_file
    from tuitune.core.models import resolve
    from tuitune.core.serving.vllm import VLLMServer
    from tuitune.settings import Settings, load_settings

    samples = [s for s in read_file(args.data).samples
               if not args.max_chars or len(s.instruction) + len(s.input) + len(s.output) <= args.max_chars]
    samples = samples[: args.records]
    work = Path(tempfile.mkdtemp(prefix="tuitune-thread-budget-"))
    data = work / "data.jsonl"
    data.write_text("".join(json.dumps({"messages": s.to_messages()}, ensure_ascii=False) + "\n" for s in samples),
                    encoding="utf-8")
    (work / "project").mkdir()
    settings = load_settings(project=work / "project")
    model = resolve(Settings().models_dir, "smollm2-135m-instruct")
    machine = hardware.detect()
    print(f"{len(samples)} records of {args.data.name} (the first of <= {args.max_chars} chars), batch {args.batch}, LoRA r=8; {machine.cpu_cores} cores; "
          f"load average {os.getloadavg()[0]:.2f}" + (f"; ignored from the environment: {dropped}" if dropped else ""),
          flush=True)

    def load() -> str:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())

    results: dict[str, dict] = {}
    t0 = time.monotonic()
    results["a"] = train(settings, data, args.batch, list)
    results["a"]["load"] = load()
    print(f"(a) alone                   {results['a']['tok_s']:6.1f} tok/s  threads {results['a']['threads']}  "
          f"load {results['a']['load']}  ({time.monotonic() - t0:.0f} s)", flush=True)

    server = VLLMServer(model, settings=settings, name="base", log_path=work / "vllm.log")
    server.threads = resources.thread_budget(machine, [])  # as the app plans a first server: alone, the defaults
    load_gen = None
    try:
        server.start()
        print(f"server ready in {server.ready_seconds:.0f} s (pid {server.pid}); {args.streams} chat streams of "
              f"{args.max_tokens} tokens looping", flush=True)
        family = {server.pid, *(c.pid for c in psutil.Process(server.pid).children(recursive=True))}

        detect = resources.running  # `train` swaps resources.running for the function given: keep the real one

        def ours() -> list:  # the real detection, limited to this run's server
            return [h for h in detect() if h.pid in family]

        prompts = [s.instruction for s in samples]
        load_gen = Load(server.endpoint(), prompts, args.streams, args.max_tokens).start()
        time.sleep(20)  # the streams reach a steady state
        for key, label, fn in (("b", "beside server, budget OFF", list), ("c", "beside server, budget ON ", ours)):
            t1, n1 = load_gen.count()
            res = train(settings, data, args.batch, fn)
            t2, n2 = load_gen.count()
            res["server_tok_s"] = (n2 - n1) / (t2 - t1)
            res["load"] = load()
            results[key] = res
            print(f"({key}) {label} {res['tok_s']:6.1f} tok/s  threads {res['threads']}  server "
                  f"{res['server_tok_s']:.1f} tok/s  load {res['load']}  ({time.monotonic() - t0:.0f} s)", flush=True)
    finally:
        if load_gen is not None:
            load_gen.end()
        server.stop()
    if load_gen and load_gen.errors:
        print(f"chat errors during the load: {len(load_gen.errors)}, first: {load_gen.errors[0]}")
    a, b, c = (results[k]["tok_s"] for k in "abc")
    print(f"\ntraining tokens/s: alone {a:.1f}, beside a busy server budget OFF {b:.1f}, budget ON {c:.1f} "
          f"({results['a']['tokens']} tokens, {results['a']['steps']} steps each)")
    print(f"OFF/alone = {b / a:.2f}x   ON/alone = {c / a:.2f}x   ON/OFF = {c / b:.2f}x (training)")
    sb, sc = results["b"]["server_tok_s"], results["c"]["server_tok_s"]
    print(f"server generated tokens/s meanwhile: OFF {sb:.1f}, ON {sc:.1f} (ON/OFF = {sc / sb:.2f}x)")
    print(f"total {time.monotonic() - t0:.0f} s; work folder {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
