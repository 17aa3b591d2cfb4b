"""Serving throughput, measured side by side in one run on the same model:

1. vLLM (our VLLMServer, OpenAI API, streaming): time to first token for one chat (median of 5), then aggregate
   generated tokens/s with N concurrent chats (default 16);
2. transformers `generate` in-process on the same model and the same N prompts, as one padded batch (its best
   case: a single batched call, greedy, no HTTP);
and prints the ratio vLLM / transformers. Both generate exactly --tokens new tokens per chat (EOS ignored), so
the token counts are equal. Targets (issue 5): ratio >= 3x and first token < 1 s on the embedded model.

    .venv/bin/python bench/serve_throughput.py [--chats 16] [--tokens 128] [--rounds 1] [--model DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROMPTS = [
    "Explain what a Kubernetes pod is.", "Give three tips for better sleep.", "What causes rain?",
    "Write a haiku about the sea.", "How do I reverse a list in Python?", "What is photosynthesis?",
    "Describe the taste of an apple.", "Why is the sky blue?", "List four planets.", "What is a prime number?",
    "How does a bicycle stay upright?", "Translate 'good morning' into French.", "What is inflation?",
    "Summarise the plot of Cinderella.", "What does a compiler do?", "Name three kinds of clouds.",
]


def prompts(n: int) -> list[str]:
    return [PROMPTS[i % len(PROMPTS)] + ("" if i < len(PROMPTS) else f" (variant {i})") for i in range(n)]


async def vllm_side(server, n: int, tokens: int) -> dict:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0, timeout=600)
    model = server.name

    async def chat(prompt: str, max_tokens: int) -> tuple[float, int]:
        t0 = time.perf_counter()
        first, count = None, 0
        stream = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=0,
            stream=True, stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
        async for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - t0
            if chunk.usage:
                count = chunk.usage.completion_tokens
        return first or float("nan"), count

    await chat("Hello!", 8)  # warm-up
    ttfts = [(await chat(p, 16))[0] for p in prompts(5)]
    t0 = time.perf_counter()
    results = await asyncio.gather(*(chat(p, tokens) for p in prompts(n)))
    wall = time.perf_counter() - t0
    await client.close()
    total = sum(c for _, c in results)
    return {"ttft_median": statistics.median(ttfts), "ttfts": ttfts, "tokens": total, "seconds": wall,
            "tok_s": total / wall}


def transformers_side(model_dir: Path, n: int, tokens: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
             for p in prompts(n)]
    batch = tok(texts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        model.generate(**tok(texts[:1], return_tensors="pt"), max_new_tokens=4, do_sample=False)  # warm-up
        t0 = time.perf_counter()
        out = model.generate(**batch, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id)
        wall = time.perf_counter() - t0
    total = (out.shape[1] - batch["input_ids"].shape[1]) * n
    return {"tokens": total, "seconds": wall, "tok_s": total / wall, "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chats", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--model", type=Path, help="model folder (default: the embedded model)")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds; the best of each side is compared "
                                                          "(other processes on a shared machine add noise)")
    args = ap.parse_args(argv)

    from tuitune.core.models import prepare_embedded
    from tuitune.core.serving.vllm import VLLMServer
    from tuitune.settings import Settings

    settings = Settings()
    model_dir = args.model or prepare_embedded(settings.models_dir)
    log = Path(tempfile.mkdtemp(prefix="tuitune-bench-")) / "vllm.log"
    print(f"model {model_dir}\n{args.chats} concurrent chats x {args.tokens} new tokens; {args.rounds} round(s) "
          f"of vLLM then transformers (best of each is compared); vLLM log {log}", flush=True)
    vs, ts = [], []
    for r in range(args.rounds):
        # the vLLM server is stopped before transformers runs, so neither side competes with the other for CPU
        print(f"round {r + 1}: load average before vLLM {load()}", flush=True)
        with VLLMServer(model_dir, name="bench", log_path=log, settings=settings, max_model_len=1024) as server:
            print(f"  vLLM ready in {server.ready_seconds:.1f} s", flush=True)
            v = asyncio.run(vllm_side(server, args.chats, args.tokens))
        vs.append(v)
        print(f"  vLLM:         {v['tokens']} tokens in {v['seconds']:.1f} s = {v['tok_s']:.1f} tok/s; first token "
              f"{v['ttft_median'] * 1000:.0f} ms (median of {len(v['ttfts'])}); load average {load()}", flush=True)
        t = transformers_side(model_dir, args.chats, args.tokens)
        ts.append(t)
        print(f"  transformers: {t['tokens']} tokens in {t['seconds']:.1f} s = {t['tok_s']:.1f} tok/s (one batch of "
              f"{args.chats}, fp32, {t['threads']} threads); load average {load()}", flush=True)
    v = max(vs, key=lambda x: x["tok_s"])
    t = max(ts, key=lambda x: x["tok_s"])
    ttft = min(x["ttft_median"] for x in vs)
    ratio = v["tok_s"] / t["tok_s"]
    print(f"RATIO vLLM/transformers aggregate tok/s = {v['tok_s']:.1f}/{t['tok_s']:.1f} = {ratio:.2f}x "
          f"(target >= 3x: {'met' if ratio >= 3 else 'NOT met'})")
    print(f"TTFT one chat = {ttft:.3f} s (target < 1 s: {'met' if ttft < 1.0 else 'NOT met'})")
    return 0


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
