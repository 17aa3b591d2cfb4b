"""In-process greedy generation with transformers, several prompts per forward pass (left padding).

Used where no server runs: the training worker's automatic evaluation and bench/learned.py. It needs no vLLM start
(about a minute), so a small model is evaluated right after training.

Speed on a CPU (2-core Xeon with AMX, embedded 135M model, 64 new tokens per row): a decoding step costs a fixed
part (Python, kernel launches) many times a row's own share (ROWS_PER_STEP), so rows are nearly free: 99 tokens/s at 8 rows,
209 at 32 in fp32; bf16 weights 156 / 337. So batches take up to MAX_BATCH rows as their key/value cache fits in
KV_BUDGET, planned so that short answers do not wait for long ones where that costs more (plan_batches), and the
weights are bf16 on a GPU and on a CPU where bf16_probe measured decoding faster in bf16 (bench/verdict_speed.py
compares before and now side by side).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

MAX_BATCH = 32
BATCH_TOKENS = 8192  # prompt tokens per batch at most (long few-shot prompts go fewer at a time)
KV_BUDGET = 2 << 30  # bytes of key/value cache a batch may take (prompt + answer tokens of every row)
ROWS_PER_STEP = 8  # a decoding step's fixed cost equals this many rows' own cost (embedded model, CPU, bf16, prompts
# of ~290 tokens: 45 ms per step for 1 row, 62 for 8, 140 for 27, i.e. ~42 ms + ~3.6 ms per row, more per row as
# the context grows; larger models pay more per row)


class LocalModel:
    """A model folder loaded once; `answer` greedy-decodes a batch of conversations."""

    engine = "transformers"

    def __init__(self, path: Path | str, name: str | None = None, *, device: str | None = None,
                 bf16: bool | None = None, probe_dir: Path | None = None):
        """bf16: weights in bf16 (None: on a GPU; on a CPU where the decode probe, cached in probe_dir, says it
        pays; without probe_dir a CPU stays fp32)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path = Path(path)
        self.name = name or self.path.name
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tok = AutoTokenizer.from_pretrained(self.path)
        self.bf16 = decode_in_bf16(self.device, probe_dir) if bf16 is None else bf16
        dtype = torch.bfloat16 if self.bf16 else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(self.path, dtype=dtype).to(self.device).eval()
        self.context = int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)
        self.kv_bytes = kv_bytes_per_token(self.model.config, 2 if self.bf16 else 4)
        self.stopped: list[bool] = []  # of the last answer() call
        self.on_batch = None  # called (answers done, answers asked) after each batch, for progress

    def count_tokens(self, messages: list[dict]) -> int:
        return len(self._ids(messages))

    def _ids(self, messages: list[dict]) -> list[int]:
        out = self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return list(out["input_ids"] if hasattr(out, "keys") else out)

    def answer(self, conversations: Sequence[list[dict]], max_new_tokens: int, batch: int = MAX_BATCH,
               limits: Sequence[int] | None = None) -> list[str]:
        """Greedy answers, in order. `limits`: new tokens per answer (default max_new_tokens for each); an answer
        is cut at its own limit whatever its batch-mates get, so it does not depend on them. Prompts are grouped
        by limit, then length, so a batch decodes little past its answers' limits and pads little."""
        import torch

        tok, model = self.tok, self.model
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        eos = model.generation_config.eos_token_id
        encoded = [self._ids(c) for c in conversations]
        limit = list(limits) if limits is not None else [max_new_tokens] * len(encoded)
        order = sorted(range(len(encoded)), key=lambda i: (limit[i], len(encoded[i])))
        out: list[str] = [""] * len(encoded)
        self.stopped = [False] * len(encoded)  # per answer: ended with EOS within max_new_tokens
        eos_ids = set(eos if isinstance(eos, list) else [eos]) | {tok.eos_token_id}
        start = 0
        for size in plan_batches([(len(encoded[i]), limit[i]) for i in order], self.kv_bytes, batch):
            idx = order[start:start + size]
            start += size
            width = max(len(encoded[i]) for i in idx)
            ids = torch.tensor([[pad] * (width - len(encoded[i])) + encoded[i] for i in idx], device=model.device)
            mask = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in idx],
                                device=model.device)
            with torch.no_grad():
                gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max(limit[i] for i in idx),
                                     do_sample=False, pad_token_id=pad, eos_token_id=eos)
            for row, i in zip(gen[:, width:].tolist(), idx):
                row = row[:limit[i]]
                self.stopped[i] = any(t in eos_ids for t in row)
                out[i] = tok.decode(row, skip_special_tokens=True).strip()
            if self.on_batch is not None:
                self.on_batch(start, len(order))
        return out


def fits(rows: Sequence[tuple[int, int]], kv_bytes: int) -> bool:
    """Whether `rows` ((prompt tokens, new tokens) each) go in one batch: every row is padded to the longest prompt
    and decodes to the largest limit, within BATCH_TOKENS prompt tokens and KV_BUDGET bytes of key/value cache."""
    width, new = max(p for p, _ in rows), max(n for _, n in rows)
    return len(rows) * width <= BATCH_TOKENS and len(rows) * (width + new) * kv_bytes <= KV_BUDGET


def plan_batches(rows: Sequence[tuple[int, int]], kv_bytes: int, most: int = MAX_BATCH) -> list[int]:
    """Sizes of consecutive batches over `rows` (sorted by limit), each one that `fits` (a single row always goes),
    at most `most` rows, with the least estimated time: a batch decodes to its largest limit, and a step costs a
    fixed part plus 1/ROWS_PER_STEP of it per row. So rows with small limits do not wait for one with a large limit
    unless the saved steps pay for it."""
    n = len(rows)
    best: list[tuple[float, int]] = [(0.0, 0)] + [(float("inf"), 0)] * n  # (time to answer rows[:j], last size)
    for j in range(1, n + 1):
        for size in range(1, min(most, j) + 1):
            group = rows[j - size:j]
            if size > 1 and not fits(group, kv_bytes):
                break  # a larger group holds this one: it does not fit either
            cost = best[j - size][0] + max(lim for _, lim in group) * (1 + size / ROWS_PER_STEP)
            if cost < best[j][0]:
                best[j] = (cost, size)
    sizes = []
    while n:
        sizes.append(best[n][1])
        n -= best[n][1]
    return sizes[::-1]


def kv_bytes_per_token(config, dtype_bytes: int) -> int:
    """Key/value cache bytes one token takes in every layer (grouped-query heads counted as they are stored)."""
    heads = int(getattr(config, "num_attention_heads", 1) or 1)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or int(getattr(config, "hidden_size", 64)) // heads)
    layers = int(getattr(config, "num_hidden_layers", 1) or 1)
    return 2 * layers * kv_heads * head_dim * dtype_bytes


def decode_in_bf16(device: str, probe_dir: Path | None) -> bool:
    """bf16 weights on a GPU; on a CPU only with native bf16 and where decoding was measured faster in it."""
    if device != "cpu":
        return True
    if probe_dir is None:
        return False
    from tuitune.core.training.bf16_probe import bf16_decode_pays
    from tuitune.core.training.presets import cpu_has_native_bf16

    return cpu_has_native_bf16() and bf16_decode_pays(probe_dir)
