"""Merge a run's adapter into a full model folder (safetensors + tokenizer + chat template) and the
post-train checks run on it.

The merged folder is written beside its final place and renamed in when complete, so `runs/<id>/merged/`
either does not exist or is a whole model that vLLM and transformers load.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


class MergeError(Exception):
    """The adapter cannot be merged, with what to do about it."""


def merge_adapter(base_path: Path | str, adapter_dir: Path | str, out_dir: Path | str,
                  chat_template: str | None = None) -> Path:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    if not (adapter_dir / "adapter_config.json").exists():
        raise MergeError(f"{adapter_dir} holds no adapter (adapter_config.json). Has the run finished? "
                         f"Resume it first.")
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        # Merge into an unquantized copy of the base (also for QLoRA): the result is a plain model.
        from transformers import AutoConfig

        dtype = getattr(AutoConfig.from_pretrained(base_path), "dtype", None) or torch.float32
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        # On a GPU: in 16 bits on the GPU (an 8B model in fp32 on CPU is 32 GB of RAM and minutes of work).
        device, work = _device_dtype()
        base = AutoModelForCausalLM.from_pretrained(base_path, dtype=work, **_placed(device))
        merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
        merged = merged.to(dtype)
        merged.save_pretrained(tmp, safe_serialization=True)
        tok = AutoTokenizer.from_pretrained(adapter_dir if (adapter_dir / "tokenizer_config.json").exists()
                                            else base_path)
        if chat_template:
            tok.chat_template = chat_template
        tok.save_pretrained(tmp)
        if merged.generation_config is not None and tok.eos_token_id is not None:
            merged.generation_config.eos_token_id = _stop_ids(merged.generation_config.eos_token_id,
                                                              tok.eos_token_id)
            merged.generation_config.save_pretrained(tmp)
        copy_license_files(Path(base_path), tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


# A model's terms travel with what is made from it (the Gemma Terms of Use ask for that; Llama's license too).
LICENSE_GLOBS = ("LICENSE*", "NOTICE*", "*TERMS*", "USE_POLICY*")


def copy_license_files(src: Path, dst: Path) -> list[str]:
    """Copy the base folder's license and notice files into a folder derived from it; the names copied."""
    names = sorted({p.name for g in LICENSE_GLOBS for p in Path(src).glob(g) if p.is_file()})
    for name in names:
        shutil.copy2(Path(src) / name, Path(dst) / name)
    return names


def _stop_ids(base, eos: int) -> int | list[int]:
    """The base's stop ids plus the tokenizer's EOS (a base model may stop on its text EOS and the template's end
    of turn: both stay)."""
    ids = [i for i in (base if isinstance(base, list) else [base]) if i is not None]
    if eos in ids:
        return ids if len(ids) > 1 else eos
    return [*ids, eos] if ids else eos


def _device_dtype():
    """(device, dtype) for merging and the stop check: the GPU in bf16 (fp16 without bf16) when CUDA is there,
    else the CPU in fp32."""
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return "cpu", torch.float32


def _placed(device: str) -> dict:
    return {"device_map": {"": device}} if device != "cpu" else {}


def merge_run(run_dir: Path | str) -> Path:
    """Merge runs/<id>/adapter into runs/<id>/merged (for full fine-tuning the model is already there)."""
    from tuitune.core.training.config import TrainConfig
    from tuitune.core.training.run_dir import RunDir

    run = RunDir(Path(run_dir))
    cfg = TrainConfig.load(run.config)
    if cfg.peft_kind == "none":
        if run.has_merged():
            copy_license_files(Path(cfg.base_path), run.merged)  # the trainer saved it: the base's terms go too
            return run.merged
        raise MergeError(f"{run.id} is a full fine-tuning run and has no model in merged/ yet; it has not "
                         f"finished. Resume it first.")
    template = run.chat_template
    return merge_adapter(cfg.base_path, run.adapter, run.merged,
                         template.read_text(encoding="utf-8") if template.exists() else None)


def check_template(model_dir: Path | str, expected: str) -> dict:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return {"check": "chat_template", "passed": tok.chat_template == expected,
            "details": "the merged folder's chat template is the one used in training"
            if tok.chat_template == expected else "the merged folder's chat template differs from training's"}


def check_stops(model_dir: Path | str, prompts: list[list[dict]], max_new_tokens: int) -> dict:
    """Greedy-generate each prompt with transformers; passed when every answer ends with EOS in budget."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    device, dtype = _device_dtype()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, **_placed(device))
    model.eval()
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos]) | {tok.eos_token_id}
    results = []
    for msgs in prompts:
        enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt",
                                      return_dict=True).to(device)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id or tok.eos_token_id)
        new = out[0, enc["input_ids"].shape[1]:].tolist()
        stopped = bool(new) and new[-1] in eos_ids
        results.append({"stopped": stopped, "tokens": len(new),
                        "answer": tok.decode(new, skip_special_tokens=True)[:200]})
    passed = bool(results) and all(r["stopped"] for r in results)
    return {"check": "stops", "passed": passed, "max_new_tokens": max_new_tokens, "results": results,
            "device": device,
            "details": f"{sum(r['stopped'] for r in results)}/{len(results)} answers ended with EOS within "
                       f"{max_new_tokens} tokens"}
