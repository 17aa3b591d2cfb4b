"""Did it learn? Real tasks nobody here wrote, trained with the presets on the embedded model, then judged.

Sets:
- identity: LLaMA-Factory's identity set (91 records). 15 records are held out by the benchmark (whole duplicate
  groups, seed 0, tuitune.core.data.groups); the other 76 are imported into a fresh project as accepted samples
  and trained with `tuitune train`'s presets and `eval: true` (the run holds out its own ~10% for early stopping
  and its verdict).
- translation: the first 300 records of LLaMA-Factory's alpaca_zh_demo, 30 held out the same way (long records:
  slow on a CPU).
- k8s: the seed job, Kubernetes docs EN->ZH (../shared/fixtures/real/k8s_docs_en_zh.jsonl, {"en", "zh", "source"}):
  each pair becomes instruction "Translate the following English text to Chinese", input = en, output = zh, with
  the seed's system prompt (K8S_SYSTEM). Pairs longer than --max-tokens (whole record with the system prompt, in the
  embedded SmolLM2 tokenizer, so every base sees the same pairs) are dropped, then --held-share of the rest is held
  out by whole duplicate groups (seed 0). The defaults (128 tokens, 20%) keep the SmolLM2 run near 15 minutes on a
  2-core CPU. BLEU uses sacrebleu's `zh` tokenizer and ROUGE-L counts CJK characters (metrics.py picks both for
  Chinese references).

Prints, per set: the presets chosen, the run's own verdict, then base / few-shot / tuned on the benchmark's held-out
questions (BLEU, chrF, ROUGE-L, exact/contains, how many answers ended with EOS, for identity how many say
"{{name}}" and "{{author}}"), that verdict, and the wall time (import -> trained, merged and evaluated).
The identity targets: >= 12/15 answers with both placeholders, every answer ending with EOS, the post-train stop
check 3/3, held-out ROUGE-L above 50 and clearly ahead of base and few-shot, under 15 minutes on a 2-core CPU.

    .venv/bin/python bench/learned.py                      # identity
    .venv/bin/python bench/learned.py --set translation    # or --set both
    .venv/bin/python bench/learned.py --set k8s --base smollm2-135m-instruct,gemma3-270m   # side by side

`--base NAME[,NAME...]`: any model name `tuitune train --base` takes (default the embedded smollm2-135m-instruct);
with several, each is trained and judged on the same records, one after the other, and one table compares them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "real"
SETS = {"identity": ("llamafactory_identity.json", None, 15), "translation": ("llamafactory_alpaca_zh_demo.json",
                                                                              300, 30)}
K8S_FILE = "k8s_docs_en_zh.jsonl"
K8S_INSTRUCTION = "Translate the following English text to Chinese"
K8S_SYSTEM = ("You are a professional translator who can translate English to Chinese accurately while preserving "
              "the original formatting and technical terms")
K8S_MAX_TOKENS = 128  # whole record (system + user + answer, chat template), embedded tokenizer
K8S_HELD_SHARE = 0.2


class BadData(Exception):
    """A record of the benchmark's input that cannot be used (names file, line and field)."""


def k8s_rows(path: Path) -> list[dict]:
    """The K8s pairs as Alpaca rows with the seed's instruction and system prompt."""
    rows = []
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise BadData(f"{path}:{no}: not JSON ({e.msg})") from None
        for key in ("en", "zh"):
            if not isinstance(rec.get(key), str) or not rec[key].strip():
                raise BadData(f"{path}:{no}: field {key!r} missing or empty")
        rows.append({"instruction": K8S_INSTRUCTION, "input": rec["en"], "output": rec["zh"], "system": K8S_SYSTEM,
                     "source": rec.get("source", "")})
    return rows


def sample_of(r: dict, **state):
    from tuitune.core.data.samples import Sample

    return Sample(instruction=r["instruction"], input=r.get("input", ""), output=r["output"],
                  system=r.get("system", ""), **state)


def record_tokens(rows: list[dict]) -> list[int]:
    """Tokens of each whole record (chat template, system prompt included) in the embedded model's tokenizer."""
    from transformers import AutoTokenizer

    from tuitune.core import models
    from tuitune.settings import Settings

    tok = AutoTokenizer.from_pretrained(models.resolve(Settings().models_dir, models.EMBEDDED_NAME))
    out = []
    for r in rows:
        ids = tok.apply_chat_template(sample_of(r).to_messages(), tokenize=True)
        out.append(len(ids["input_ids"] if hasattr(ids, "keys") else ids))
    return out


def load_set(name: str, max_tokens: int, held_share: float) -> tuple[list[dict], list[dict], str]:
    """(training rows, held-out rows, a line saying how they were chosen) for a set."""
    if name != "k8s":
        fname, first, n_held = SETS[name]
        rows = json.loads((REAL / fname).read_text(encoding="utf-8"))[:first]
        train_rows, held_rows = split(rows, n_held)
        return train_rows, held_rows, f"{len(rows)} records of {fname}"
    rows = k8s_rows(REAL / K8S_FILE)
    lengths = record_tokens(rows)
    kept = [r for r, n in zip(rows, lengths) if n <= max_tokens]
    kept_len = sorted(n for n in lengths if n <= max_tokens)
    n_held = round(held_share * len(kept))
    train_rows, held_rows = split(kept, n_held)
    how = (f"{len(rows)} pairs of {K8S_FILE}; {len(rows) - len(kept)} longer than {max_tokens} tokens dropped "
           f"(whole record with the system prompt, embedded SmolLM2 tokenizer; all pairs: median "
           f"{sorted(lengths)[len(lengths) // 2]}, max {max(lengths)}), {len(kept)} kept (median "
           f"{kept_len[len(kept_len) // 2]} tokens); held-out share {held_share:g} -> {len(held_rows)} held out by "
           f"duplicate groups (seed 0), {len(train_rows)} imported; instruction {K8S_INSTRUCTION!r}, system prompt "
           f"{K8S_SYSTEM[:48]!r}...")
    return train_rows, held_rows, how


class Recording:
    """A contender's model that keeps, per answer() call, which answers ended with EOS (LocalModel.stopped holds
    only the last call's, and base and few-shot share one model)."""

    def __init__(self, model):
        self._model, self.calls = model, []

    def answer(self, conversations, max_new_tokens, **kw):
        out = self._model.answer(conversations, max_new_tokens, **kw)
        self.calls.append(list(self._model.stopped))
        return out

    def __getattr__(self, name):
        return getattr(self._model, name)


def split(rows: list[dict], held: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    from tuitune.core.data.groups import duplicate_groups, grouped_split
    from tuitune.core.data.samples import Sample

    groups = duplicate_groups([Sample(instruction=r["instruction"], input=r.get("input", ""), output=r["output"],
                                      system=r.get("system", "")) for r in rows])
    sp = grouped_split(groups, held, seed)
    return [rows[i] for i in sp.train], [rows[i] for i in sp.test]


def load_avg() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def run_set(name: str, train_rows: list[dict], held_rows: list[dict], project: Path, overrides: dict,
            existing: Path | None = None) -> dict:
    from tuitune.core.data.store import Store
    from tuitune.core.evaluation.evaluate import (
        answer_budget,
        evaluate,
        item_budget,
        items_from_records,
        run_split,
        three_way,
    )
    from tuitune.core.evaluation.local import LocalModel
    from tuitune.core.serving.chat import GenParams
    from tuitune.core.training import jobs
    from tuitune.core.training.config import TrainConfig
    from tuitune.core.training.events import read_events
    from tuitune.settings import load_settings

    t0 = time.monotonic()
    base_name = overrides.get("base", TrainConfig().base)
    print(f"\n== {name} on {base_name}: {len(train_rows)} imported, {len(held_rows)} held out by the benchmark; "
          f"load average {load_avg()} on {os.cpu_count()} CPUs", flush=True)
    if existing is None:
        project.mkdir(parents=True)
        with Store.open(project) as store:
            store.add_samples([sample_of(r, origin="import", status="accepted") for r in train_rows])
        run_id = jobs.launch(load_settings(project=project), TrainConfig(eval=True).updated(**overrides))
        run = project / "runs" / run_id
    else:  # a finished run trained on this set's training records (e.g. `tuitune train --data`): evaluate only
        run, run_id = existing.resolve(), existing.name
    cfg = TrainConfig.load(run / "config.yaml")
    print(f"run {run_id}: base {cfg.base}, holdout {cfg.holdout}, batch {cfg.batch_size} ({cfg.micro_batch_size} per "
          f"pass), epochs {cfg.epochs}, lr {cfg.learning_rate}, LoRA r{cfg.lora_r}/alpha {cfg.lora_alpha}, max length "
          f"{cfg.max_length}, save/eval every {cfg.save_steps} steps, early stopping patience "
          f"{cfg.early_stopping_patience}", flush=True)
    info = jobs.wait(run, timeout=6 * 3600, poll=5)
    trained = time.monotonic() - t0
    events = read_events(run)[0]
    if info.status != "done":
        if existing is None or not (run / "merged" / "config.json").is_file():
            print(f"run ended {info.status}: {info.error}\n{(run / 'worker.log').read_text()[-3000:]}")
            return {"set": name, "base": base_name, "status": info.status}
        print(f"run ended {info.status} after merging ({info.error}); the benchmark evaluates its merged model")
    steps = [e for e in events if e["event"] == "step"]
    evals = [e for e in events if e["event"] == "eval" and "eval_loss" in e]
    stops = next((e for e in events if e["event"] == "check" and e.get("check") == "stops"), {})
    verdict = next((e for e in events if e["event"] == "verdict"), {})
    curve = " ".join(f"{e['eval_loss']:.3f}@{e['step']}" for e in evals)
    print(f"trained {steps[-1]['step']}/{steps[-1]['max_steps']} steps, last loss {steps[-1]['loss']:.3f}; held-out "
          f"loss {curve}; stop check: {stops.get('details', '?')}", flush=True)
    if verdict:
        print(f"run's own verdict ({verdict.get('n')} held-out records, k={verdict.get('few_shot_k')}, "
              f"{verdict.get('seconds')} s): {verdict.get('summary')}")
    else:
        print("run's own verdict: none (the run ended before it)")
    what = "import -> trained, merged and judged"
    if existing is not None:  # the run's own span, first event to last
        trained, what = events[-1]["time"] - events[0]["time"], "worker start -> last event"
    print(f"wall time, {what}: {trained:.0f} s ({trained / 60:.1f} min); load average {load_avg()}", flush=True)

    # the benchmark's own held-out questions, never seen by the run
    t1 = time.monotonic()
    items = items_from_records([{"messages": sample_of(r).to_messages()} for r in held_rows])
    from tuitune.settings import Settings

    home = Settings().home  # the same precision as the run's own verdict: bf16 where measured faster
    base = LocalModel(cfg.base_path, cfg.base, probe_dir=home)
    tuned = LocalModel(run / "merged", run_id, probe_dir=home)
    budget = answer_budget(items, base.count_tokens, cap=cfg.max_length or 512)
    train, _, _ = run_split(run)
    contenders, sample = three_way(train, items, base, tuned, seed=cfg.seed, count_tokens=base.count_tokens,
                                   context=base.context, answer_tokens=budget)
    for c in contenders:  # each its own record of which answers ended with EOS (the first call: held-out items)
        c.model = Recording(c.model)

    def note(msg: str) -> None:
        print(f"  {msg}", flush=True)

    cap = cfg.max_length or 512  # per item, as the run's own verdict: twice its reference + 32, at most cap
    report = asyncio.run(evaluate(items, contenders, run_id=run_id, params=GenParams(temperature=0.0,
                                  max_tokens=budget, seed=0), train_items=sample, progress=note,
                                  answer_limit=lambda it: item_budget(it, base.count_tokens, cap)))
    judged = time.monotonic() - t1
    eos = {c.role: sum(c.model.calls[0]) if c.model.calls else None for c in contenders}
    print(f"\n{len(items)} benchmark held-out questions, greedy, at most {budget} new tokens (per item: twice "
          f"its reference + 32), BLEU tokenizer {report.tokenizer!r}"
          f"{', ROUGE-L on CJK characters' if report.tokenizer == 'zh' else ''} ({judged:.0f} s):")
    print(f"{'':28} {'BLEU':>6} {'chrF':>6} {'ROUGE-L':>8} {'exact':>6} {'contains':>8} {'chrF train':>10} "
          f"{'EOS':>7}")
    for r in report.results:
        m = r.metrics
        train_chrf = f"{r.train_metrics['chrf']:.1f}" if r.train_metrics else "-"
        ended = "-" if eos.get(r.role) is None else f"{eos[r.role]}/{len(items)}"
        print(f"{r.role + ' (' + r.model[:16] + ')':28} {m['bleu']:6.1f} {m['chrf']:6.1f} {m['rougeL']:8.1f} "
              f"{_pct(m['exact']):>6} {_pct(m['contains']):>8} {train_chrf:>10} {ended:>7}")
    print(f"verdict: {report.verdict['text']}")
    roles = report.by_role()
    result = {"set": name, "base": base_name, "run": run_id, "wall_seconds": round(trained),
              "bench_seconds": round(judged), "verdict": report.verdict["code"], "verdict_text": report.verdict["text"],
              "stop_check": stops.get("details"), "eos": eos, "n": len(items),
              "metrics": {role: {k: r.metrics[k] for k in ("bleu", "chrf", "rougeL")} for role, r in roles.items()}}
    if name == "identity":
        both = sum("{{name}}" in a and "{{author}}" in a for a in roles["tuned"].outputs)
        print(f'tuned answers with "{{{{name}}}}" and "{{{{author}}}}": {both}/{len(items)}; base: '
              f'{sum("{{name}}" in a for a in roles["base"].outputs)}/{len(items)} with "{{{{name}}}}"')
        result["placeholders"] = both
    for i, it in enumerate(items[:4]):
        print(f"\n  Q: {it.prompt[:100]}\n  reference: {it.reference[:120]}")
        for r in report.results:
            print(f"  {r.role}: {r.outputs[i][:120]}")
    return result


def comparison(results: list[dict]) -> str:
    """One table, a row per base model: base / few-shot / tuned scores, EOS counts, verdict, stop check, time."""
    head = (f"{'base model':24} {'contender':9} {'BLEU':>6} {'chrF':>6} {'ROUGE-L':>8} {'EOS':>7}  verdict / stop "
            f"check / wall time")
    lines = [head]
    for res in results:
        if "metrics" not in res:
            lines.append(f"{res['base'][:24]:24} run ended {res.get('status')}")
            continue
        extras = [res["verdict"], f"stop check {res['stop_check']}",
                  f"{res['wall_seconds'] / 60:.1f} min import -> judged, +{res['bench_seconds'] / 60:.1f} min benchmark"]
        for i, role in enumerate(("base", "few_shot", "tuned")):
            m, ended = res["metrics"][role], res["eos"].get(role)
            eos = "-" if ended is None else f"{ended}/{res['n']}"
            lines.append(f"{(res['base'] if i == 0 else '')[:24]:24} {role:9} {m['bleu']:6.1f} {m['chrf']:6.1f} "
                         f"{m['rougeL']:8.1f} {eos:>7}  {extras[i]}")
    return "\n".join(lines)


def _pct(x) -> str:
    return "-" if x is None else f"{x:.0f}%"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", dest="which", choices=["identity", "translation", "k8s", "both"], default="identity",
                    help="both = identity and translation")
    ap.add_argument("--base", default="",
                    help="Base model(s) to train, comma-separated: each is trained and judged on the same records, "
                         "then compared in one table (default: the presets' base, the embedded model).")
    ap.add_argument("--max-tokens", type=int, default=K8S_MAX_TOKENS,
                    help=f"k8s: drop pairs longer than this many tokens (default {K8S_MAX_TOKENS}).")
    ap.add_argument("--held-share", type=float, default=K8S_HELD_SHARE,
                    help=f"k8s: share of the kept pairs held out by the benchmark (default {K8S_HELD_SHARE}).")
    ap.add_argument("--keep", type=Path, help="Keep the projects in this folder (default: a temporary one).")
    ap.add_argument("--run", type=Path, help="Evaluate this finished run folder instead of training one (one set).")
    ap.add_argument("--override", action="append", default=[], metavar="FIELD=VALUE",
                    help="A TrainConfig field for the run, e.g. --override epochs=3 (default: the presets).")
    args = ap.parse_args(argv)
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.override)}
    bases = [b.strip() for b in args.base.split(",") if b.strip()] or [overrides.get("base", "")]
    names = ["identity", "translation"] if args.which == "both" else [args.which]
    if args.run and (len(names) > 1 or len(bases) > 1):
        ap.error("--run evaluates one finished run: one set and one base")
    if not 0 < args.held_share < 1:
        ap.error("--held-share takes a share between 0 and 1, e.g. 0.2")
    if missing := unusable(b for b in bases if b):
        print(missing, file=sys.stderr)
        return 2
    try:
        data = {n: load_set(n, args.max_tokens, args.held_share) for n in names}
    except (BadData, OSError) as e:
        print(f"cannot read the benchmark's data: {e}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="tuitune-learned-") as tmp:
        workdir = args.keep or Path(tmp)
        for n in names:
            train_rows, held_rows, how = data[n]
            print(f"\n{n}: {how}; bases: {', '.join(b or 'the presets default' for b in bases)}", flush=True)
            for b in bases:
                label = (b or "default").replace("/", "_")
                results.append(run_set(n, train_rows, held_rows, workdir / f"{n}-{label}",
                                       {**overrides, **({"base": b} if b else {})}, args.run))
    if len(bases) > 1:
        for n in names:
            print(f"\n{n}, side by side:\n{comparison([r for r in results if r['set'] == n])}")
    print(f"\nall sets and bases: {time.monotonic() - t0:.0f} s; load average {load_avg()}")
    print("\n" + json.dumps(results, ensure_ascii=False))
    return 0


def unusable(bases) -> str:
    """'' when every base model resolves without downloading anything, else why not (before any training)."""
    from tuitune.core import models
    from tuitune.settings import Settings

    problems = []
    for b in bases:
        try:
            models.locate(Settings().models_dir, b, download=False)
        except Exception as e:  # noqa: BLE001 - ModelError or a Hub lookup failure: all mean "cannot train on it"
            problems.append(f"base model {b!r}: {e}")
    return "\n".join(problems)


if __name__ == "__main__":
    sys.exit(main())
