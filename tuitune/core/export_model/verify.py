"""Greedy answers from a GGUF file and from a model folder, and how far they agree.

`gguf_greedy_answers` reads the GGUF with transformers' GGUF loader (it de-quantizes the weights, so this checks
the file's weights, vocabulary and embedded chat template, not llama.cpp's kernels); with llama-cpp-python
installed, `llama_cpp_greedy_answers` runs the file in llama.cpp itself, on the prompt text an Ollama TEMPLATE
produces. Both answer each conversation alone (no batching: a batch's padding can change greedy answers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from tuitune.core.export_model import ExportError


class GgufUnreadable(ExportError):
    """The written GGUF does not load back."""


def _device_dtype():
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16
    return "cpu", torch.float32


def _greedy(model, tok, messages_list: Sequence[list[dict]], max_new_tokens: int, device: str,
            on_answer: Callable[[int], None] | None = None) -> list[str]:
    import torch

    if not tok.chat_template:
        raise ExportError("the tokenizer has no chat template to build the prompts with")
    eos = model.generation_config.eos_token_id
    eos_ids = sorted({*(eos if isinstance(eos, list) else [eos]), tok.eos_token_id} - {None})
    answers = []
    for i, msgs in enumerate(messages_list):
        enc = tok.apply_chat_template(list(msgs), add_generation_prompt=True, return_tensors="pt",
                                      return_dict=True).to(device)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos_ids,
                                 pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else eos_ids[0])
        answers.append(tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))
        if on_answer:
            on_answer(i + 1)
    return answers


def folder_greedy_answers(model_dir: Path | str, messages_list: Sequence[list[dict]], max_new_tokens: int,
                          on_answer: Callable[[int], None] | None = None) -> list[str]:
    """Greedy answers of a Hugging Face model folder (transformers; fp32 on CPU, bf16 on a GPU)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device, dtype = _device_dtype()
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    return _greedy(model, tok, messages_list, max_new_tokens, device, on_answer)


def gguf_greedy_answers(gguf_path: Path | str, messages_list: Sequence[list[dict]], max_new_tokens: int,
                        on_answer: Callable[[int], None] | None = None) -> list[str]:
    """Greedy answers of a GGUF file, read by transformers' GGUF loader with the file's own tokenizer and chat
    template. GgufUnreadable when the file does not load."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(gguf_path)
    device, dtype = _device_dtype()
    try:
        tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    except (OSError, ValueError, KeyError, RuntimeError, NotImplementedError) as e:
        raise GgufUnreadable(f"{path} does not load in transformers' GGUF reader: {type(e).__name__}: {e}") from e
    model = model.to(device).eval()
    return _greedy(model, tok, messages_list, max_new_tokens, device, on_answer)


def llama_cpp_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def llama_cpp_greedy_answers(gguf_path: Path | str, prompts: Sequence[str], max_new_tokens: int,
                             timeout: float = 1800) -> list[str]:
    """Greedy answers of llama.cpp itself (llama-cpp-python, in a process of its own: llama_cpp_run.py) on prompt
    texts (e.g. chat_format.render_messages: what an Ollama TEMPLATE writes); BOS as the file's metadata asks,
    special tokens parsed. GgufUnreadable when llama.cpp fails or crashes on the file."""
    import json
    import os
    import subprocess
    import sys

    from tuitune.core.export_model.child import PARENT_ENV

    argv = [sys.executable, "-m", "tuitune.core.export_model.child", "-m", "tuitune.core.export_model.llama_cpp_run"]
    job = json.dumps({"gguf": str(gguf_path), "prompts": list(prompts), "max_new_tokens": max_new_tokens})
    res = subprocess.run(argv, input=job, capture_output=True, text=True, timeout=timeout, check=False,
                         env={**os.environ, PARENT_ENV: str(os.getpid())})
    if res.returncode != 0:
        status = f"killed by signal {-res.returncode}" if res.returncode < 0 else f"exit status {res.returncode}"
        tail = "\n".join(res.stderr.strip().splitlines()[-10:])
        raise GgufUnreadable(f"llama.cpp (llama-cpp-python) failed on {gguf_path} ({status}): {tail}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def compare_answers(reference: Sequence[str], candidate: Sequence[str], context: int = 40) -> dict:
    """{n, identical, share_identical, first_difference: None or {prompt, char, reference, candidate}}: the
    first answer that differs, the character where it does, and a little text of each from there."""
    n = min(len(reference), len(candidate))
    same = [reference[i] == candidate[i] for i in range(n)]
    first = None
    for i in range(n):
        if not same[i]:
            a, b = reference[i], candidate[i]
            at = next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            first = {"prompt": i, "char": at, "reference": a[max(0, at - 10): at + context],
                     "candidate": b[max(0, at - 10): at + context]}
            break
    return {"n": n, "identical": sum(same), "share_identical": (sum(same) / n) if n else None,
            "first_difference": first}


def describe(comparison: dict, engine: str) -> str:
    """One line: '3/3 answers of ENGINE identical to the merged model's' or where the first one differs."""
    n, k = comparison["n"], comparison["identical"]
    line = f"{engine}: {k}/{n} greedy answers identical to the merged model's (transformers)"
    d = comparison.get("first_difference")
    if d:
        line += (f"; the first difference is in answer {d['prompt'] + 1} at character {d['char']}: "
                 f"merged {d['reference']!r} vs GGUF {d['candidate']!r}")
    return line
