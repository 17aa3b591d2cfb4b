"""Synthesis throughput: unique stored samples per minute, the concurrent engine vs one request at a time,
against the same endpoint, measured side by side in one run and printed as a ratio.

    .venv/bin/python bench/synth_throughput.py                      # starts vLLM on the embedded model
    .venv/bin/python bench/synth_throughput.py --base-url URL --model NAME --api-key-env VAR

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


async def arm(cfg: TeacherConfig, concurrency: int, args) -> dict:
    with tempfile.TemporaryDirectory() as d, Store.open(Path(d)) as store:
        store.set_task(description="Answer patients' questions about chronic diseases.")
        store.add_samples([Sample(q, a, origin="seed", status="accepted") for q, a in SEEDS])
        teacher = Teacher(cfg)
        params = RoundParams(n=args.n, per_request=args.per_request, concurrency=concurrency,
                             max_tokens=args.max_tokens, temperature=1.0)
        t0 = time.monotonic()
        fin = await SynthRound(store, teacher, params).run()
        secs = time.monotonic() - t0
        await teacher.close()
        c = fin.counters
        return {"concurrency": concurrency, "status": fin.status, "stored": c.stored, "seconds": round(secs, 1),
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
    args = ap.parse_args()

    def run(cfg: TeacherConfig) -> None:
        seq = asyncio.run(arm(cfg, 1, args))
        con = asyncio.run(arm(cfg, args.concurrency, args))
        ratio = con["per_minute"] / seq["per_minute"] if seq["per_minute"] else float("nan")
        print(json.dumps({"sequential": seq, "concurrent": con}, indent=1))
        print(f"unique stored samples/min: sequential {seq['per_minute']}, concurrent(x{args.concurrency}) "
              f"{con['per_minute']}  ->  ratio {ratio:.2f}x")

    if args.base_url:
        run(TeacherConfig("bench", args.base_url, args.model, args.api_key_env, supports_json_schema=True,
                          timeout=600))
        return
    from tuitune.core.models import EMBEDDED_NAME, prepare_embedded
    from tuitune.core.serving.vllm import VLLMServer
    from tuitune.settings import Settings

    st = Settings()
    log = Path(tempfile.gettempdir()) / "tuitune-bench-vllm.log"
    print(f"starting vLLM on the embedded model (log {log}) ...", flush=True)
    with VLLMServer(prepare_embedded(st.models_dir), name=EMBEDDED_NAME, log_path=log, settings=st) as srv:
        run(TeacherConfig("embedded", srv.base_url, EMBEDDED_NAME, supports_json_schema=True, timeout=600,
                          api_key=srv.api_key))


if __name__ == "__main__":
    main()
