"""In-process greedy generation with transformers, several prompts per forward pass (left padding).

Used where no server runs: the training worker's automatic evaluation and bench/learned.py. On this 2-core CPU a
batch of 8 generates several times the tokens per second of one-at-a-time answers, and it needs no vLLM start
(about a minute), so a small model is evaluated right after training.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

BATCH = 8
BATCH_TOKENS = 8192  # prompt tokens per batch at most (long few-shot prompts go fewer at a time)


class LocalModel:
    """A model folder loaded once; `answer` greedy-decodes a batch of conversations."""

    engine = "transformers"

    def __init__(self, path: Path | str, name: str | None = None, *, device: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path = Path(path)
        self.name = name or self.path.name
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tok = AutoTokenizer.from_pretrained(self.path)
        dtype = torch.float32 if self.device == "cpu" else torch.bfloat16
        self.model = AutoModelForCausalLM.from_pretrained(self.path, dtype=dtype).to(self.device).eval()
        self.context = int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)
        self.stopped: list[bool] = []  # of the last answer() call
        self.on_batch = None  # called (answers done, answers asked) after each batch, for progress

    def count_tokens(self, messages: list[dict]) -> int:
        return len(self._ids(messages))

    def _ids(self, messages: list[dict]) -> list[int]:
        out = self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return list(out["input_ids"] if hasattr(out, "keys") else out)

    def answer(self, conversations: Sequence[list[dict]], max_new_tokens: int, batch: int = BATCH,
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
        while start < len(order):
            size = batch
            while size > 1 and size * max(len(encoded[i]) for i in order[start:start + size]) > BATCH_TOKENS:
                size -= 1
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
