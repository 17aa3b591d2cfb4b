"""README.md (a Hugging Face model card) for an exported model folder, from the run's config, data and events."""

from __future__ import annotations

import re
from pathlib import Path

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
METRICS = (("bleu", "BLEU"), ("chrf", "chrF"), ("rougeL", "ROUGE-L"), ("exact", "exact %"),
           ("contains", "contains %"), ("judge", "judge (1-5)"))
ROLE_NAMES = {"base": "base model", "few_shot": "base model, few-shot", "tuned": "tuned (this model)"}


def run_facts(run_path: Path | str) -> dict:
    """What the card says, read from the run folder: config, data size, the last loss, steps, the verdict."""
    from tuitune.core.training.config import ConfigError, TrainConfig
    from tuitune.core.training.run_dir import RunDir, read_all

    run = RunDir(Path(run_path))
    state = read_all(run.events)
    try:
        cfg = TrainConfig.load(run.config)
    except ConfigError:
        cfg = None
    records = 0
    data = Path(cfg.data) if cfg and cfg.data else run.data
    if data.is_file():
        with open(data, "rb") as f:
            records = sum(1 for line in f if line.strip())
    return {"run_id": run.id, "config": cfg, "records": records, "holdout": (cfg.holdout or 0) if cfg else 0,
            "steps": state.step, "max_steps": state.max_steps, "loss": state.loss, "status": state.status,
            "verdict": state.verdict, "model": state.model, "trained_at": state.started}


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def _known(**values) -> str:
    """', name value, ...' of the values that are set."""
    parts = [f"{k.replace('_', ' ')} {v}" for k, v in values.items() if v is not None and v != ""]
    return (", " + ", ".join(parts)) if parts else ""


def card(facts: dict, *, system_prompt: str = "", name: str = "") -> str:
    cfg = facts["config"]
    base = cfg.base if cfg else "?"
    method = cfg.method if cfg else "?"
    front = ["---", "library_name: transformers", "tags:", "- tuitune", f"- {method}"]
    if cfg and HUB_ID.match(base.split("@")[0]):
        front.append(f"base_model: {base.split('@')[0]}")
    front += ["---", ""]
    title = name or f"tuitune run {facts['run_id']}"
    lines = [f"# {title}", "",
             f"Fine-tuned with tuitune from **{base}** by **{method}** (run `{facts['run_id']}`).", ""]
    lines += ["## Training", ""]
    if cfg:
        lines.append(f"- base model: `{base}`" + (f" (folder `{cfg.base_path}`)" if cfg.base_path else ""))
        adapter = cfg.peft_kind
        if adapter != "none":
            lines.append(f"- method: {method}, {adapter} adapter"
                         + _known(r=cfg.lora_r, alpha=cfg.lora_alpha, target_modules=cfg.target_modules)
                         + "; merged into the base weights")
        else:
            lines.append(f"- method: {method}, all weights trained")
        lines.append(f"- steps: {facts['steps']}" + (f" of {facts['max_steps']}" if facts["max_steps"] else "")
                     + _known(learning_rate=cfg.learning_rate, batch_size=cfg.batch_size,
                              grad_accum=cfg.grad_accum, max_length=cfg.max_length, seed=cfg.seed))
    n, held = facts["records"], facts["holdout"]
    lines.append(f"- data: {n} records" + (f", {held} of them held out (not trained on)" if held else ""))
    if facts["loss"] is not None:
        lines.append(f"- last training loss: {facts['loss']:.4f}")
    if system_prompt:
        lines += ["", "System prompt used in training (send it as the system message):", "",
                  "```text", system_prompt.strip(), "```"]
    lines += ["", "## Held-out evaluation", ""]
    verdict = facts["verdict"]
    if not verdict:
        lines.append("No held-out verdict was recorded for this run (train with `--set eval=true` and a "
                     "held-out split for one).")
    else:
        lines.append(f"**Verdict:** {verdict.get('summary') or verdict.get('verdict')}")
        contenders = verdict.get("contenders") or {}
        if contenders:
            shown = [(k, title) for k, title in METRICS if any(c.get(k) is not None for c in contenders.values())]
            lines += ["", f"On {verdict.get('n', '?')} held-out examples, greedy decoding:", "",
                      "| model | " + " | ".join(t for _, t in shown) + " |",
                      "|---|" + "---|" * len(shown)]
            for role, c in contenders.items():
                lines.append(f"| {ROLE_NAMES.get(role, role)} | " + " | ".join(_fmt(c.get(k)) for k, _ in shown)
                             + " |")
    lines += ["", "## Use", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
              'tok = AutoTokenizer.from_pretrained("PATH_TO_THIS_FOLDER")',
              'model = AutoModelForCausalLM.from_pretrained("PATH_TO_THIS_FOLDER")',
              "```", "", "or serve it with vLLM: `vllm serve PATH_TO_THIS_FOLDER`.", ""]
    return "\n".join(front + lines)
