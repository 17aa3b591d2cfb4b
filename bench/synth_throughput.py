"""Synthesis throughput: unique stored samples per minute, measured side by side in one run, printed as ratios:

- concurrency: the concurrent engine vs one request at a time, same endpoint;
- endpoints: a round over two endpoints (a teacher pool, each endpoint --concurrency in flight) vs one endpoint;
- batch: the round as one vLLM offline batch job (run_batch, model load included) vs the online concurrent round.

    .venv/bin/python bench/synth_throughput.py                      # starts vLLM on the embedded model
    .venv/bin/python bench/synth_throughput.py --compare endpoints,batch --n 32
    .venv/bin/python bench/synth_throughput.py --base-url URL --model NAME --api-key-env VAR   # concurrency only

Both arms run the same SynthRound engine with the same seeds, prompts and parameters in fresh projects; the
baseline has concurrency 1 (a sequential request loop), the other --concurrency requests in flight.
Counted: samples stored (parsed, long enough, not duplicates) per minute of wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from tuitune.core.data.samples import Sample
from tuitune.core.data.store import Store
from tuitune.core.synth.engine import RoundParams, SynthRound
from tuitune.core.synth.teacher import Teacher, TeacherConfig

SEEDS = [
    ("What should I do if my blood sugar drops below 4 mmol/L?",
     "Take 15 g of fast sugar, wait 15 minutes and measure again; repeat if it is still low."),
    ("How often should someone with high blood pressure check it at home?",
     "Twice in the morning and twice in the evening for a week, then a few times a week."),
    ("Can people with asthma exercise?", "Yes: warm up, carry your reliever inhaler and avoid very cold air."),
    ("Is fruit allowed with type 2 diabetes?",
     "Yes, whole fruit in normal portions; avoid juice and dried fruit in large amounts."),
]


async def arm(cfg: TeacherConfig | list[TeacherConfig], concurrency: int, args, runner=None) -> dict:
    """One round in a fresh project: online through one endpoint or a pool of several, or as a batch job."""
    from tuitune.core.synth.teacher_pool import TeacherPool

    with tempfile.TemporaryDirectory() as d, Store.open(Path(d)) as store:
        store.set_task(description="Answer patients' questions about chronic diseases.")
        store.add_samples([Sample(q, a, origin="seed", status="accepted") for q, a in SEEDS])
        cfgs = cfg if isinstance(cfg, list) else [cfg]
        teacher = TeacherPool.of([(c, 1.0) for c in cfgs]) if len(cfgs) > 1 else Teacher(cfgs[0])
        params = RoundParams(n=args.n, per_request=args.per_request, concurrency=concurrency * len(cfgs),
                             max_tokens=args.max_tokens, temperature=1.0)
        t0 = time.monotonic()
        eng = SynthRound(store, teacher, params)
        if runner is not None:
            from tuitune.core.synth.batch import run_batch_round

            fin = await run_batch_round(eng, runner, project=Path(d))
        else:
            fin = await eng.run()
        secs = time.monotonic() - t0
        await teacher.close()
        c = fin.counters
        return {"concurrency": concurrency, "endpoints": len(cfgs), "batch": runner is not None,
                "status": fin.status, "stored": c.stored, "seconds": round(secs, 1),
                "per_minute": round(c.stored / secs * 60, 2), "requests": c.requests,
                "unparseable": c.unparseable, "duplicates": c.duplicates}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url")
    ap.add_argument("--model")
    ap.add_argument("--api-key-env", default="")
    ap.add_argument("--n", type=int, default=16, help="samples per arm")
    ap.add_argument("--per-request", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=300)
    ap.add_argument("--compare", default="concurrency", help="comma list of: concurrency, endpoints, batch")
    args = ap.parse_args()
    compare = set(args.compare.split(","))

    def ratio(a: dict, b: dict) -> float:
        return a["per_minute"] / b["per_minute"] if b["per_minute"] else float("nan")

    def run(cfg: TeacherConfig) -> None:
        seq = asyncio.run(arm(cfg, 1, args))
        con = asyncio.run(arm(cfg, args.concurrency, args))
        print(json.dumps({"sequential": seq, "concurrent": con}, indent=1))
        print(f"unique stored samples/min: sequential {seq['per_minute']}, concurrent(x{args.concurrency}) "
              f"{con['per_minute']}  ->  ratio {ratio(con, seq):.2f}x")

    if args.base_url:
        run(TeacherConfig("bench", args.base_url, args.model, args.api_key_env, supports_json_schema=True,
                          timeout=600))
        return
    from tuitune.core.models import EMBEDDED_NAME, prepare_embedded
    from tuitune.core.serving.vllm import VLLMServer
    from tuitune.settings import Settings

    st = Settings()
    model = prepare_embedded(st.models_dir)
    log = Path(tempfile.gettempdir()) / "tuitune-bench-vllm.log"
    print(f"starting vLLM on the embedded model (log {log}) ...", flush=True)
    with VLLMServer(model, name=EMBEDDED_NAME, log_path=log, settings=st) as srv:
        one = TeacherConfig("embedded", srv.base_url, EMBEDDED_NAME, supports_json_schema=True, timeout=600,
                            api_key=srv.api_key)
        if "concurrency" in compare:
            run(one)
        if "batch" in compare:
            from tuitune.core.synth.batch import LocalRunner

            online = asyncio.run(arm(one, args.concurrency, args))
            env = VLLMServer(model, settings=st, log_path=log).env()
            runner = LocalRunner(env, model, EMBEDDED_NAME, log.with_name("tuitune-bench-run-batch.log"))
            batch = asyncio.run(arm(one, args.concurrency, args, runner=runner))
            print(json.dumps({"online": online, "batch": batch}, indent=1))
            print(f"unique stored samples/min: online(x{args.concurrency}) {online['per_minute']}, vLLM run_batch "
                  f"(model load included) {batch['per_minute']}  ->  batch/online {ratio(batch, online):.2f}x")
        if "endpoints" in compare:
            log2 = log.with_name("tuitune-bench-vllm-2.log")
            print(f"starting a second vLLM on the embedded model (log {log2}) ...", flush=True)
            with VLLMServer(model, name=EMBEDDED_NAME, log_path=log2, settings=st) as srv2:
                two = TeacherConfig("embedded-2", srv2.base_url, EMBEDDED_NAME, supports_json_schema=True,
                                    timeout=600, api_key=srv2.api_key)
                single = asyncio.run(arm(one, args.concurrency, args))
                pair = asyncio.run(arm([one, two], args.concurrency, args))
            print(json.dumps({"one_endpoint": single, "two_endpoints": pair}, indent=1))
            print(f"unique stored samples/min: one endpoint(x{args.concurrency}) {single['per_minute']}, two "
                  f"endpoints(x{args.concurrency} each) {pair['per_minute']}  ->  two/one {ratio(pair, single):.2f}x")


if __name__ == "__main__":
    main()
