"""Engine parity: the same held-out prompts answered greedily by every engine that runs the tuned model
(transformers on runs/<id>/merged, vLLM on the same folder, the GGUF once one is exported), and where they part.

A merged model can answer differently in vLLM than in transformers, or in llama.cpp/Ollama from a GGUF, and users
find out after deploying. This measures it: per pair of engines, the share of identical answers (whitespace at the
ends ignored) and the first divergence (item, character and token offset, both snippets). A large disagreement is
a warning that names the likely cause, decided from evidence, not guessed:

- `template`: the engines fed the model different prompt tokens for the same conversation (each engine reports
  the token ids it rendered, or its chat template text): a different chat template or special tokens;
- `eos`: the answers agree up to where one engine stopped and the other ran on (EOS/stop tokens differ);
- `dtype`: the engines compute in different precisions (bf16 vs fp32) and the answers part late, after a long
  common start: small numeric differences that greedy decoding amplifies;
- `numerics`: same precision, late divergences (kernels, batching);
- `unknown`: early divergences with none of the above.

The engines' runners and `EngineAnswers` are in parity_engines.py. `compare()` works on any number of engines' answer lists (EngineAnswers); `parity_check(run_dir)` produces them
for a run, writes runs/<id>/parity.json (every answer, for a look) and returns the summary that the training
worker and `parity_check` record as a `parity` event (RunState.parity: the run's card, `tuitune runs --json`).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tuitune.core.evaluation.parity_engines import (  # the engines' answers; re-exported
    EngineAnswers,
    _cutter,
    _free_gpu,
    _try_vllm,
    gguf_answers,
    transformers_answers,
)

ENGINES = ("transformers", "vllm", "gguf")
DEFAULT_PROMPTS = 8
WARN_BELOW = 0.75  # a pair of engines agreeing on fewer answers than this share is a warning
LATE = 0.3  # a divergence after this share of the shorter answer (and at least LATE_CHARS) counts as late
LATE_CHARS = 20
SNIPPET = 40  # characters of each answer shown from the divergence on (and half as many before it)
PARITY_FILE = "parity.json"
CAUSE_ADVICE = {
    "template": "the engines render the chat prompt differently: give every engine the merged folder's own chat "
                "template (tokenizer_config.json / chat_template.jinja; for a GGUF the template embedded at export, "
                "for Ollama the Modelfile's TEMPLATE), and the same system prompt",
    "eos": "one engine stops where the other runs on: give both the same EOS/stop tokens (generation_config.json "
           "eos_token_id, the server's stop tokens, the Modelfile's PARAMETER stop)",
    "dtype": "the engines compute in different precisions; greedy decoding amplifies small numeric differences "
             "late in an answer. Expected; compare in one dtype to confirm",
    "numerics": "same precision, late divergences: kernels and batching; usually harmless",
    "unknown": "early divergences without a template, stop or precision difference: check the sampling settings "
               "(repetition penalty and other defaults from generation_config.json) each engine applies",
}


class ParityError(Exception):
    """The parity check cannot run for this run, with what to do about it."""


# ---- comparing answer lists -----------------------------------------------------------------------------

def common_prefix(a: Sequence, b: Sequence) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _snippet(text: str, at: int) -> str:
    start = max(0, at - SNIPPET // 2)
    return ("…" if start else "") + text[start:at + SNIPPET] + ("…" if at + SNIPPET < len(text) else "")


def divergence(a: EngineAnswers, b: EngineAnswers, i: int,
               count_tokens: Callable[[str], int] | None = None) -> dict | None:
    """Where answer i of a and b part (None when identical): the character offset, the token offset (from
    both engines' answer tokens when known, else the shared start counted with count_tokens) and both snippets."""
    x, y = a.answers[i].strip(), b.answers[i].strip()
    if x == y:
        return None
    k = common_prefix(x, y)
    ids_a, ids_b = a._at("answer_ids", i), b._at("answer_ids", i)
    if ids_a is not None and ids_b is not None:
        token = common_prefix(ids_a, ids_b)
    else:
        token = count_tokens(x[:k]) if count_tokens else None
    return {"item": i, "char": k, "token": token, "snippets": {a.engine: _snippet(x, k), b.engine: _snippet(y, k)}}


def _late(d: dict, a: str, b: str) -> bool:
    shorter = min(len(a.strip()), len(b.strip()))
    return d["char"] >= LATE_CHARS and d["char"] >= LATE * shorter


def likely_cause(a: EngineAnswers, b: EngineAnswers, diverged: list[dict]) -> tuple[str | None, str]:
    """(cause, evidence in words) for the pair's differences; (None, "") when they agree everywhere. The
    template is judged on every prompt (it matters even where the answers happen to agree)."""
    n = len(a.answers)
    bad = [i for i in range(n) if a._at("prompt_ids", i) is not None and b._at("prompt_ids", i) is not None
           and a.prompt_ids[i] != b.prompt_ids[i]]
    if bad:
        i = bad[0]
        pa, pb = a.prompt_ids[i], b.prompt_ids[i]
        return "template", (f"{a.engine} and {b.engine} fed the model different prompt tokens on {len(bad)} of {n} "
                            f"prompts (item {i}: {len(pa)} vs {len(pb)} tokens, first different at token "
                            f"{common_prefix(pa, pb)})")
    if a.template is not None and b.template is not None and a.template != b.template:
        return "template", f"{a.engine} and {b.engine} render with different chat templates"
    if not diverged:
        return None, ""
    run_on = {a.engine: 0, b.engine: 0}
    for d in diverged:
        i = d["item"]
        x, y = a.answers[i].strip(), b.answers[i].strip()
        if d["char"] == min(len(x), len(y)):  # one answer is where the other goes on
            longer, shorter = (a, b) if len(x) > len(y) else (b, a)
            if shorter._at("stopped", i) is not False and longer._at("stopped", i) is not True:
                run_on[longer.engine] += 1
    engine, count = max(run_on.items(), key=lambda kv: kv[1])
    if count and 2 * count >= len(diverged):
        other = b.engine if engine == a.engine else a.engine
        stops = "; ".join(f"{e.engine} ended {sum(s is True for s in e.stopped)}/{n} answers with EOS"
                          for e in (a, b) if e.stopped)
        return "eos", (f"in {count} of {len(diverged)} differing answers {engine}'s answer runs on past where "
                       f"{other}'s stopped" + (f" ({stops})" if stops else ""))
    late = sum(_late(d, a.answers[d["item"]], b.answers[d["item"]]) for d in diverged)
    where = f"{late} of {len(diverged)} differing answers part late (after a shared start)"
    if a.dtype and b.dtype and a.dtype != b.dtype:
        if 2 * late >= len(diverged):
            return "dtype", f"{a.engine} computes in {a.dtype}, {b.engine} in {b.dtype}; {where}"
        return "unknown", (f"{a.engine} computes in {a.dtype}, {b.engine} in {b.dtype}, but only {where}: more than "
                           f"precision differs")
    if 2 * late >= len(diverged):
        return "numerics", f"both in {a.dtype or 'the same precision'}; {where}"
    return "unknown", where


def compare_pair(a: EngineAnswers, b: EngineAnswers, count_tokens: Callable[[str], int] | None = None) -> dict:
    """One pair's numbers: identical answers (count and share), the first divergence, the likely cause with its
    evidence, and a warning (words) when the agreement is low or the prompts differ."""
    if len(a.answers) != len(b.answers):
        raise ValueError(f"{a.engine} has {len(a.answers)} answers, {b.engine} {len(b.answers)}: the same prompts "
                         f"are needed")
    n = len(a.answers)
    diverged = [d for i in range(n) if (d := divergence(a, b, i, count_tokens)) is not None]
    identical = n - len(diverged)
    share = identical / n if n else 1.0
    cause, evidence = likely_cause(a, b, diverged)
    warning = None
    if n and (share < WARN_BELOW or cause == "template"):
        warning = (f"{a.engine} and {b.engine} agree on {identical}/{n} answers; likely cause: {cause} ({evidence}). "
                   f"{CAUSE_ADVICE[cause]}.")
    return {"engines": [a.engine, b.engine], "identical": identical, "n": n, "share": round(share, 3),
            "first": diverged[0] if diverged else None, "diverged_items": [d["item"] for d in diverged],
            "cause": cause, "evidence": evidence, "warning": warning}


def compare(engines: Sequence[EngineAnswers], count_tokens: Callable[[str], int] | None = None) -> dict:
    """Every pair of engines (in the given order) compared: {"engines": [...], "pairs": [...], "warnings": [...],
    "summary": words}. Any number of engines; fewer than two gives no pairs."""
    pairs = [compare_pair(a, b, count_tokens) for a, b in itertools.combinations(engines, 2)]
    return {"engines": [_engine_summary(e) for e in engines], "pairs": pairs,
            "warnings": [p["warning"] for p in pairs if p["warning"]], "summary": summary_words(pairs)}


def _engine_summary(e: EngineAnswers) -> dict:
    known = [s for s in e.stopped if s is not None]
    return {"engine": e.engine, "dtype": e.dtype, "n": len(e.answers), "detail": e.detail,
            "stopped": sum(known) if known else None,
            "seconds": round(e.seconds, 1) if e.seconds is not None else None}


def pair_words(p: dict) -> str:
    a, b = p["engines"]
    text = f"{a} vs {b}: {p['identical']}/{p['n']} identical"
    f = p.get("first")
    if f:
        tok = f", token {f['token']}" if f.get("token") is not None else ""
        text += f" (first divergence: item {f['item']}, char {f['char']}{tok})"
    if p.get("warning"):
        text += f", likely cause: {p['cause']}"
    return text


def summary_words(pairs: Sequence[dict]) -> str:
    return "; ".join(pair_words(p) for p in pairs)


def event_lines(ev: dict | None) -> list[tuple[str, str]]:
    """A `parity` event as (level, words) lines for the card and `tuitune runs`: level "info" (per pair, with each
    engine's dtype), "warning" (a large disagreement and its likely cause) or "note" (skipped, engines left out)."""
    if not ev:
        return []
    if ev.get("skipped"):
        return [("note", f"engine parity: {ev['skipped']}")]
    dtypes = {e.get("engine"): e.get("dtype") for e in ev.get("engines") or []}
    out = []
    for p in ev.get("pairs") or []:
        a, b = p["engines"]
        words = pair_words(p).replace(f"{a} vs {b}", f"{_named(a, dtypes)} vs {_named(b, dtypes)}", 1)
        out.append(("info", f"engine parity: {words}"))
    if not ev.get("pairs"):
        out.append(("note", f"engine parity: only {', '.join(dtypes) or 'no engine'} answered: nothing to compare"))
    out += [("warning", w) for w in ev.get("warnings") or []]
    out += [("note", f"engine parity left out {x['engine']}: {x['why']}") for x in ev.get("left_out") or []]
    return out


def _named(engine: str, dtypes: dict) -> str:
    return f"{engine} ({dtypes[engine]})" if dtypes.get(engine) else engine


def exported_gguf(run_dir: Path) -> Path | None:
    """The newest GGUF of the run that `tuitune export-model RUN --format gguf` wrote: in its default place,
    <project>/exports/models/<run>-<quant>/<run>-<quant>.gguf, or in the run folder; None when there is none
    (one exported elsewhere with --output is named explicitly: model_dirs={"gguf": path})."""
    run_dir = Path(run_dir)
    found = [*run_dir.rglob("*.gguf"),
             *(run_dir.parent.parent / "exports" / "models").glob(f"{run_dir.name}-*/{run_dir.name}-*.gguf")]
    found = [p for p in found if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


# ---- a run's parity check -------------------------------------------------------------------------------

def run_prompts(run_dir: Path, n: int) -> tuple[list, str, object]:
    """Up to n items (a conversation without its last answer, and that answer) from the run's held-out split, or
    from its training records when nothing was held out; (items, "held-out" | "training", config)."""
    from tuitune.core.evaluation.contenders import run_split
    from tuitune.core.evaluation.metrics import EvalError

    try:
        train, held, cfg = run_split(run_dir)
    except EvalError as e:
        raise ParityError(str(e)) from None
    held_items = _items(held)
    source = "held-out" if held_items else "training"
    return (held_items or _items(train))[:n], source, cfg


def _items(records: list[dict]) -> list:
    """Chat records as items; preference records ({"prompt": [...], "chosen": [...]}) as their prompt and the
    chosen answer."""
    from tuitune.core.evaluation.contenders import EvalItem, items_from_records

    items = items_from_records(records)
    for r in records:
        if isinstance(r.get("prompt"), list) and r["prompt"] and isinstance(r.get("chosen"), list) and r["chosen"]:
            items.append(EvalItem([{"role": m["role"], "content": m["content"]} for m in r["prompt"]],
                                  str(r["chosen"][-1].get("content", ""))))
    return items


def parity_check(run_dir: Path | str, engines: Sequence[str] = ENGINES, n: int = DEFAULT_PROMPTS, *,
                 settings=None, max_new_tokens: int | None = None, model_dirs: dict[str, Path] | None = None,
                 progress: Callable[[str], None] | None = None, emit: bool = True) -> dict:
    """Answer n of the run's held-out prompts with each engine on runs/<id>/merged (model_dirs overrides the
    folder per engine, e.g. the copy a server really serves; "gguf" names the file), compare them, save every
    answer in runs/<id>/parity.json and (emit) append a `parity` event. An engine that cannot run is left out
    with the reason (`left_out`), never silently. Returns the event's fields.

    Each answer may take twice its reference's tokens plus 32 (as in the verdict), at most max_new_tokens
    (default: the run's check_max_new_tokens, else min(max_length, 256))."""
    from tuitune.core.evaluation.evaluate import item_budget
    from tuitune.core.evaluation.local import LocalModel
    from tuitune.core.training.run_dir import RunDir

    run = RunDir(Path(run_dir).resolve())
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or not engines:
        raise ParityError(f"unknown engine {unknown[0]!r}; the engines are {', '.join(ENGINES)}" if unknown else
                          f"name at least one engine of {', '.join(ENGINES)}")
    model_dirs = {k: Path(v) for k, v in (model_dirs or {}).items()}
    tf_dir = model_dirs.get("transformers", run.merged)
    if not (Path(tf_dir) / "config.json").is_file():
        raise ParityError(f"run {run.id} has no merged model ({tf_dir}); merge it first: `tuitune merge {run.id}`")
    if settings is None:
        from tuitune.settings import Settings

        settings = Settings()
    say = progress or (lambda _msg: None)
    t0 = time.monotonic()
    items, source, cfg = run_prompts(run.path, n)
    if not items:
        raise ParityError(f"run {run.id} has no chat records to take prompts from")
    prompts = [it.messages for it in items]
    say("engine parity: loading the merged model in transformers")
    local = LocalModel(tf_dir, probe_dir=settings.home)  # the verdict's engine and dtype
    cap = max_new_tokens or cfg.check_max_new_tokens or min(cfg.max_length or 256, 256)
    limits = [item_budget(it, local.count_tokens, cap) for it in items]
    got: dict[str, EngineAnswers] = {}
    left_out: list[dict] = []
    if "transformers" in engines:
        say(f"engine parity: transformers answering {len(prompts)} prompts")
        got["transformers"] = transformers_answers(tf_dir, prompts, limits, model=local)
    tok = local.tok
    del local  # before vLLM: on a GPU it needs the memory
    _free_gpu()
    if "gguf" in engines:
        gguf = model_dirs.get("gguf") or exported_gguf(run.path)
        if gguf is None:
            left_out.append({"engine": "gguf", "why": f"no GGUF exported for this run yet (`tuitune export-model "
                             f"{run.id} --format gguf`, then `tuitune runs parity {run.id}`)"})
        else:
            say(f"engine parity: the GGUF answering {len(prompts)} prompts")
            try:
                from tuitune.core.export_model import ExportError

                got["gguf"] = gguf_answers(gguf, prompts, limits, _cutter(tok))
            except ImportError as e:
                left_out.append({"engine": "gguf", "why": f"{gguf.name} exists but no GGUF reader is available in "
                                 f"this build ({e})"})
            except (ExportError, OSError, ValueError, RuntimeError) as e:  # GgufUnreadable, the loader's own
                left_out.append({"engine": "gguf", "why": f"{gguf.name} could not answer: {type(e).__name__}: {e}"})
    if "vllm" in engines:
        answers = _try_vllm(model_dirs.get("vllm", run.merged), prompts, limits, settings, run, say, left_out)
        if answers is not None:
            got["vllm"] = answers
    results = [got[e] for e in engines if e in got]
    out = compare(results, lambda text: len(tok(text, add_special_tokens=False)["input_ids"]))
    out.update(left_out=left_out, n=len(prompts), prompts_from=source, max_new_tokens=max(limits),
               file=PARITY_FILE, seconds=round(time.monotonic() - t0, 1))
    if len(results) < 2:
        out["summary"] = (f"only {', '.join(r.engine for r in results) or 'no engine'} could answer: nothing to "
                          f"compare")
    if left_out:
        out["summary"] += "; left out: " + "; ".join(f"{x['engine']} ({x['why']})" for x in left_out)
    from tuitune.core import atomic

    atomic.write_json(run.path / PARITY_FILE, {**out, "prompts": prompts, "limits": limits,
                                                "answers": [r.to_json() for r in results]})
    if emit:
        from tuitune.core.training.events import EventWriter

        EventWriter(run.path).emit("parity", **out)
    return out


def load_parity(run_dir: Path | str) -> dict | None:
    """runs/<id>/parity.json (every engine's answers), or None."""
    path = Path(run_dir) / PARITY_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
