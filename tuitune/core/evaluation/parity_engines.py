"""What each engine answers for the parity check (evaluation/parity.py, which compares them): `EngineAnswers`
(one engine's greedy answers with its dtype, stops, prompt and answer token ids, template), and the runners for
transformers on a folder, a vLLM server started on it, and a GGUF read back by transformers' GGUF loader."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class EngineAnswers:
    """One engine's greedy answers to the same prompts (in order), with what it can tell about them."""

    engine: str  # transformers | vllm | gguf (or any label)
    answers: list[str]
    dtype: str = ""  # bf16 / fp32 / fp16 / q8_0 ...
    stopped: list[bool | None] = field(default_factory=list)  # per answer: ended by EOS/stop (None: unknown)
    prompt_ids: list[list[int] | None] = field(default_factory=list)  # per prompt: the tokens the model was fed
    answer_ids: list[list[int] | None] = field(default_factory=list)  # per answer: its tokens, when known
    template: str | None = None  # the chat template text the engine rendered with, when known
    seconds: float | None = None
    detail: str = ""  # where the answers came from (folder, server, file)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> EngineAnswers:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def _at(self, name: str, i: int):
        xs = getattr(self, name)
        return xs[i] if i < len(xs) else None


def transformers_answers(model_dir: Path, conversations: Sequence[list[dict]], limits: Sequence[int], *,
                         probe_dir: Path | None = None, model=None) -> EngineAnswers:
    """transformers on the folder, greedy, batched: local.LocalModel, the engine (and dtype) of the run's verdict."""
    from tuitune.core.evaluation.local import LocalModel

    t0 = time.monotonic()
    m = model or LocalModel(model_dir, probe_dir=probe_dir)
    answers = m.answer(list(conversations), max(limits), limits=list(limits))
    return EngineAnswers("transformers", answers, "bf16" if m.bf16 else "fp32", list(m.stopped),
                         [m._ids(c) for c in conversations], template=m.tok.chat_template,
                         seconds=time.monotonic() - t0, detail=f"{Path(model_dir)} on {m.device}")


def served_dtype(log_text: str) -> str:
    """The dtype a vLLM server computes in, from its start-up log ('dtype=torch.bfloat16'), or ''."""
    found = re.findall(r"dtype=torch\.(\w+)", log_text)
    return {"bfloat16": "bf16", "float32": "fp32", "float16": "fp16"}.get(found[-1], found[-1]) if found else ""


def vllm_answers(model_dir: Path, conversations: Sequence[list[dict]], limits: Sequence[int], *, settings,
                 log_path: Path, name: str = "parity", progress: Callable[[str], None] | None = None,
                 gpu_memory_utilization: float | None = None, max_model_len: int | None = None) -> EngineAnswers:
    """vLLM's OpenAI-compatible server on the folder (started, used, stopped here), one request at a time (on
    the CPU build greedy answers depend on the batch), temperature 0, with the prompt and answer token ids vLLM
    reports. Raises serving's VLLMUnavailable / ServingError when it cannot run."""
    from tuitune.core.serving.preflight import tail
    from tuitune.core.serving.vllm import VLLMServer

    server = VLLMServer(Path(model_dir), settings=settings, name=name, log_path=log_path,
                        gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len)
    t0 = time.monotonic()
    answers, stopped, prompt_ids, answer_ids = [], [], [], []
    with server:
        started = time.monotonic() - t0
        log = tail(log_path, 400).rpartition("==== tuitune: starting")[2]
        for i, (msgs, limit) in enumerate(zip(conversations, limits, strict=True)):
            if progress:
                progress(f"vLLM answering {i + 1}/{len(limits)}")
            body = _post(server, {"model": name, "messages": msgs, "temperature": 0.0, "max_tokens": int(limit),
                                  "seed": 0, "return_token_ids": True})
            choice = body["choices"][0]
            answers.append((choice["message"].get("content") or "").strip())
            stopped.append(choice.get("finish_reason") == "stop")
            prompt_ids.append(body.get("prompt_token_ids"))
            answer_ids.append(choice.get("token_ids"))
    return EngineAnswers("vllm", answers, served_dtype(log), stopped, prompt_ids, answer_ids,
                         seconds=time.monotonic() - t0,
                         detail=f"vLLM server on {model_dir} (ready in {started:.0f} s); log {log_path}")


def _post(server, body: dict) -> dict:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"{server.base_url}/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {server.api_key}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        from tuitune.core.serving.errors import ServingError

        raise ServingError(f"vLLM refused the parity request ({e.code}): {e.read()[:300]!r}") from None


def gguf_answers(gguf: Path, conversations: Sequence[list[dict]], limits: Sequence[int],
                 cut: Callable[[str, int], str] | None = None) -> EngineAnswers:
    """The exported GGUF read back by `tuitune export-model`'s own GGUF reader (export_model.verify: transformers'
    GGUF loader, the file's own tokenizer and embedded chat template, one prompt at a time). It takes one budget
    for all, so each answer is then cut to its own limit with `cut(text, tokens)` (the merged tokenizer; the
    GGUF holds the same vocabulary). ImportError where that reader is not in this build."""
    from tuitune.core.export_model.verify import gguf_greedy_answers

    t0 = time.monotonic()
    texts = [a.strip() for a in gguf_greedy_answers(Path(gguf), list(conversations), max(limits))]
    if cut is not None:
        texts = [cut(t, lim) for t, lim in zip(texts, limits, strict=True)]
    quant = re.search(r"(bf16|f16|f32|q\d_\w+?)(?:[.-]|$)", Path(gguf).name.lower())
    prompt_ids, template = _gguf_prompts(Path(gguf), conversations)
    return EngineAnswers("gguf", texts, quant.group(1) if quant else "gguf", prompt_ids=prompt_ids,
                         template=template, seconds=time.monotonic() - t0,
                         detail=f"{gguf} (transformers' GGUF reader, de-quantized)")


def _gguf_prompts(gguf: Path, conversations: Sequence[list[dict]]) -> tuple[list, str | None]:
    """The prompt tokens the GGUF's own tokenizer and embedded chat template give each conversation (the template
    evidence), or ([], None) where its tokenizer does not load."""
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        ids = [tok.apply_chat_template(list(c), add_generation_prompt=True, tokenize=True) for c in conversations]
    except (OSError, ValueError, KeyError, RuntimeError):  # no template in the file, an unknown tokenizer
        return [], None
    return [list(x["input_ids"] if hasattr(x, "keys") else x) for x in ids], tok.chat_template


def _try_vllm(folder, prompts, limits, settings, run, say, left_out) -> EngineAnswers | None:
    from tuitune.core.serving.errors import ServingError
    from tuitune.core.serving.preflight import has_gpu, vllm_unavailable_reason

    reason = vllm_unavailable_reason()
    if reason:
        left_out.append({"engine": "vllm", "why": reason})
        return None
    say("engine parity: starting vLLM on the merged model (about a minute on a CPU)")
    util = _gpu_share() if has_gpu() else None
    try:
        return vllm_answers(folder, prompts, limits, settings=settings, log_path=run.path / "parity-vllm.log",
                            name=run.id, progress=lambda m: say(f"engine parity: {m}"), gpu_memory_utilization=util,
                            max_model_len=_context_for(folder, limits) if util else None)
    except ServingError as e:  # VLLMUnavailable included: it could not run here; say why
        left_out.append({"engine": "vllm", "why": str(e).splitlines()[0][:400]})
    except (OSError, KeyError, IndexError, ValueError) as e:  # the server answered nothing usable
        left_out.append({"engine": "vllm", "why": f"vLLM's answers could not be read ({type(e).__name__}: {e}); "
                                                 f"log {run.path / 'parity-vllm.log'}"})
    return None


def _free_gpu() -> None:
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def _gpu_share() -> float | None:
    """The share of GPU memory a vLLM server may take beside this process (the worker still holds some)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        free, total = torch.cuda.mem_get_info()
    except (ImportError, RuntimeError):
        return None
    return round(max(0.05, min(0.9, 0.85 * free / total)), 2)


def _context_for(folder: Path, limits: Sequence[int]) -> int:
    """A context long enough for the prompts (a few thousand tokens) and the longest answer, so a small GPU
    share holds its KV cache."""
    try:
        ctx = int(json.loads((Path(folder) / "config.json").read_text()).get("max_position_embeddings") or 4096)
    except (OSError, ValueError):
        ctx = 4096
    return min(ctx, 4096 + max(limits))


def _cutter(tok) -> Callable[[str, int], str]:
    """cut(text, tokens): the text cut to its first `tokens` tokens (whole if shorter)."""
    def cut(text: str, tokens: int) -> str:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        return text if len(ids) <= tokens else tok.decode(ids[:tokens], skip_special_tokens=True).strip()

    return cut
