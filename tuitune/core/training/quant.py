"""How method qlora (or adapter qlora) quantises its frozen base with bitsandbytes: `quant: nf4` (4-bit NormalFloat
with double quantization, the QLoRA paper's choice) or `quant: int8` (8-bit LLM.int8(), `load_in_8bit`).

Both load and train on CPU too (bitsandbytes 0.50.2, torch 2.13 CPU, measured on the embedded 135M model: a LoRA
step of 2 x 81 tokens took 0.9-1.1 s in either, loss finite and falling), so neither is refused there; gpu.py
counts their memory on GPUs. The worker calls `bnb_config` when it loads the base (heavy imports stay inside).
"""

from __future__ import annotations

import logging

from tuitune.core.training.config import TrainConfig

# bitsandbytes logs this once per 8-bit matmul of a non-fp16 input (630 lines for 3 steps of the 135M model on CPU,
# where the base runs in fp32): the cast is how LLM.int8() works, not a problem, so the worker's log drops it.
CAST_NOTICE = "MatMul8bitLt: inputs will be cast from"


class _DropCastNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(CAST_NOTICE)


def bnb_config(cfg: TrainConfig, cuda: bool):
    """The `quantization_config` to load the base with (a transformers BitsAndBytesConfig), or None when the run
    does not quantise (every method but qlora). Compute runs in the dtype the base loads in (gpu.load_dtype)."""
    if cfg.peft_kind != "qlora":
        return None
    import torch
    from transformers import BitsAndBytesConfig

    from tuitune.core.training.gpu import load_dtype

    if cfg.quant == "int8":
        quiet_cast_notice()
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=getattr(torch, load_dtype(cfg, cuda)))


def quiet_cast_notice() -> None:
    """Drop bitsandbytes' per-matmul "inputs will be cast to float16" notice from this process's log (once)."""
    log = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _DropCastNotice) for f in log.filters):
        log.addFilter(_DropCastNotice())


def quant_name(q) -> str | None:
    """What a loaded model's `config.quantization_config` (a BitsAndBytesConfig or its dict) holds, as the `model`
    event reports it: "nf4", "fp4", "int8", or None. (A BitsAndBytesConfig for 8 bits still says
    bnb_4bit_quant_type "fp4", its default, so that field alone misreports an 8-bit base.)"""
    if q is None:
        return None
    get = q.get if isinstance(q, dict) else lambda k, d=None: getattr(q, k, d)
    if get("load_in_8bit", False):
        return "int8"
    if get("load_in_4bit", False):
        return get("bnb_4bit_quant_type")
    method = get("quant_method")  # another quantisation method (a pre-quantised base): its own name
    return getattr(method, "value", method)
