"""Training data: records from the project (or a file), snapshotted into the run folder, then tokenized.

Record shapes in runs/<id>/data.jsonl (one JSON object per line):
- SFT methods (lora/qlora/dora/full): {"messages": [{"role", "content"}, ...]} (system, history, user, assistant)
- dpo/orpo: {"prompt": [messages], "chosen": [assistant msg], "rejected": [assistant msg]}
- kto: the same pairs; the worker turns each into a desirable and an undesirable completion
- pretrain: {"text": "..."} (one per input file)

SFT tokenization renders the conversation with the base model's chat template and puts the loss on assistant
turns only (their closing end-of-turn/EOS token included, so the tuned model learns to stop). If the template
does not end the last assistant turn with EOS, EOS is appended.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tuitune.core.training.config import PREFERENCE_METHODS

MIN_SFT_RECORDS = 4
MIN_PREFERENCE_PAIRS = 2
MIN_PRETRAIN_CHARS = 200


class DataError(Exception):
    """Training data that cannot be used, with what to do about it."""


@dataclass
class Tokenized:
    """SFT or pretrain examples ready for the trainer, plus length statistics for presets."""

    input_ids: list[list[int]] = field(default_factory=list)
    labels: list[list[int]] = field(default_factory=list)

    @property
    def lengths(self) -> list[int]:
        return [len(x) for x in self.input_ids]

    def to_dataset(self):
        from datasets import Dataset

        return Dataset.from_dict({"input_ids": self.input_ids, "labels": self.labels, "length": self.lengths})


# ---- gathering records --------------------------------------------------------------------------------

def project_records(project: Path, method: str) -> list[dict]:
    """The project's training data for a method: kept samples as chat messages, or preference pairs."""
    from tuitune.core.data.store import Store, StoreError

    if not (Path(project) / "tuitune.db").exists():
        raise DataError(f"No tuitune project in {project}: run `tuitune init` and import or review samples "
                        f"first, or pass a data file in the config (data: FILE).")
    try:
        store = Store.open(project, create=False)
    except StoreError as e:
        raise DataError(str(e)) from None
    try:
        if method in PREFERENCE_METHODS:
            from tuitune.core.data.preferences import preference_pairs

            return [p.to_trl() for p in preference_pairs(store)]
        from tuitune.core.data.task_system import kept_samples

        return [{"messages": s.to_messages()} for s in kept_samples(store)]  # with the task's system prompt
    finally:
        store.close()


def file_records(path: Path | str, method: str) -> list[dict]:
    """Records from an exported file: Alpaca/ShareGPT/OpenAI for SFT; TRL or LLaMA-Factory pairs for
    preference methods; JSONL already in the run shape is taken as is."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"Data file {path} does not exist")
    if method in PREFERENCE_METHODS:
        return _preference_file(path)
    rows = _read_json_rows(path)
    if rows and all(isinstance(r, dict) and isinstance(r.get("messages"), list) for r in rows):
        return [{"messages": r["messages"]} for r in rows]
    from tuitune.core.data.formats import FormatError, read_file

    try:
        parsed = read_file(path)
    except FormatError as e:
        raise DataError(str(e)) from None
    return [{"messages": s.to_messages()} for s in parsed.samples]


def text_records(files: list[str]) -> list[dict]:
    out = []
    for f in files:
        p = Path(f)
        if not p.is_file():
            raise DataError(f"Text file {p} does not exist (method pretrain reads raw .txt/.md files)")
        out.append({"text": p.read_text(encoding="utf-8", errors="replace")})
    return out


def _read_json_rows(path: Path) -> list:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError:
            return []
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return []
    return data if isinstance(data, list) else []


def _msg(m) -> dict:
    if "role" in m:
        return {"role": m["role"], "content": m["content"]}
    roles = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
    return {"role": roles[m["from"]], "content": m["value"]}


def _preference_file(path: Path) -> list[dict]:
    rows = _read_json_rows(path)
    out = []
    for i, r in enumerate(rows, 1):
        try:
            if "prompt" in r:  # TRL conversational or standard
                prompt = r["prompt"] if isinstance(r["prompt"], list) else [{"role": "user", "content": r["prompt"]}]
                chosen, rejected = r["chosen"], r["rejected"]
            elif "conversations" in r:  # LLaMA-Factory ShareGPT-style pairs
                prompt = [_msg(m) for m in r["conversations"]]
                if r.get("system"):
                    prompt.insert(0, {"role": "system", "content": r["system"]})
                chosen, rejected = r["chosen"], r["rejected"]
            else:  # LLaMA-Factory Alpaca-style pairs
                user = f"{r['instruction']}\n{r['input']}" if r.get("input") else r["instruction"]
                prompt = [{"role": "system", "content": r["system"]}] if r.get("system") else []
                for q, a in r.get("history") or []:
                    prompt += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
                prompt.append({"role": "user", "content": user})
                chosen, rejected = r["chosen"], r["rejected"]
            out.append({"prompt": [_msg(m) for m in prompt], "chosen": _as_reply(chosen),
                        "rejected": _as_reply(rejected)})
        except (KeyError, TypeError) as e:
            raise DataError(f"{path}:{i}: not a preference pair (need prompt/instruction/conversations plus "
                            f"chosen and rejected): missing {e}") from None
    return out


def _as_reply(x) -> list[dict]:
    if isinstance(x, str):
        return [{"role": "assistant", "content": x}]
    if isinstance(x, dict):
        return [_msg(x)]
    return [_msg(m) for m in x]


def check_count(records: list[dict], method: str) -> None:
    if method in PREFERENCE_METHODS:
        if len(records) < MIN_PREFERENCE_PAIRS:
            raise DataError(f"{method} needs at least {MIN_PREFERENCE_PAIRS} preference pairs, found "
                            f"{len(records)}. Pairs come from review: edit an answer, or reject one and accept "
                            f"another to the same prompt.")
    elif method == "pretrain":
        if sum(len(r["text"]) for r in records) < MIN_PRETRAIN_CHARS:
            raise DataError(f"pretrain needs at least {MIN_PRETRAIN_CHARS} characters of text; give more text_files")
    elif len(records) < MIN_SFT_RECORDS:
        raise DataError(f"Only {len(records)} training records; at least {MIN_SFT_RECORDS} are needed. Import or "
                        f"accept more samples (`tuitune import`, `tuitune review`).")


# ---- tokenization -------------------------------------------------------------------------------

def tokenize_chat(tok, messages: list[dict], chat_template: str | None = None) -> tuple[list[int], list[int]]:
    """input_ids and labels (-100 outside assistant turns) of one conversation."""
    kw = {"chat_template": chat_template} if chat_template else {}
    text = tok.apply_chat_template(messages, tokenize=False, **kw)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = tok.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True, **kw)
        through = tok.apply_chat_template(messages[: i + 1], tokenize=False, **kw)
        if not (text.startswith(before) and text.startswith(through)):
            raise DataError("The chat template does not render conversations incrementally; cannot find the "
                            "assistant turns for assistant-only loss. Use a model with a standard chat template.")
        start, end = len(before), len(through)
        eos = tok.eos_token
        if eos and eos in text[start:end]:  # stop the loss at the end-of-turn token (skip trailing newline)
            end = start + text[start:end].rindex(eos) + len(eos)
        spans.append((start, end))
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    labels = [-100] * len(ids)
    for j, (s, e) in enumerate(enc["offset_mapping"]):
        if any(s < b and e > a for a, b in spans):
            labels[j] = ids[j]
    if tok.eos_token_id is not None and spans:
        last = max((j for j, lab in enumerate(labels) if lab != -100), default=None)
        if last is not None and ids[last] != tok.eos_token_id:
            ids.insert(last + 1, tok.eos_token_id)
            labels.insert(last + 1, tok.eos_token_id)
    return ids, labels


def tokenize_sft(tok, records: list[dict], chat_template: str | None = None) -> Tokenized:
    out = Tokenized()
    for r in records:
        ids, labels = tokenize_chat(tok, r["messages"], chat_template)
        out.input_ids.append(ids)
        out.labels.append(labels)
    return out


def tokenize_pretrain(tok, records: list[dict], block: int) -> Tokenized:
    """Concatenate the texts (EOS between documents) and cut them into blocks of `block` tokens."""
    stream: list[int] = []
    for r in records:
        stream += tok(r["text"], add_special_tokens=False)["input_ids"]
        if tok.eos_token_id is not None:
            stream.append(tok.eos_token_id)
    out = Tokenized()
    for i in range(0, len(stream), block):
        chunk = stream[i:i + block]
        if len(chunk) >= 16:
            out.input_ids.append(chunk)
            out.labels.append(list(chunk))
    return out


def preference_lengths(tok, records: list[dict], chat_template: str | None = None) -> list[int]:
    """Tokens of prompt + the longer answer, rendered with the chat template."""
    kw = {"chat_template": chat_template} if chat_template else {}
    out = []
    for r in records:
        n = 0
        for side in ("chosen", "rejected"):
            ids = tok.apply_chat_template(r["prompt"] + r[side], tokenize=True, **kw)
            ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
            n = max(n, len(ids))
        out.append(n)
    return out


def check_lengths(lengths: list[int], max_length: int, what: str = "record") -> None:
    too_long = [(i, n) for i, n in enumerate(lengths, 1) if n > max_length]
    if too_long:
        shown = ", ".join(f"#{i} ({n} tokens)" for i, n in too_long[:5])
        more = f" and {len(too_long) - 5} more" if len(too_long) > 5 else ""
        raise DataError(f"{len(too_long)} {what}(s) longer than max_length={max_length}: {shown}{more}. Raise "
                        f"max_length (or leave it unset to fit the longest) or shorten/remove those records.")


def kto_rows(records: list[dict]) -> list[dict]:
    rows = []
    for r in records:
        rows.append({"prompt": r["prompt"], "completion": r["chosen"], "label": True})
        rows.append({"prompt": r["prompt"], "completion": r["rejected"], "label": False})
    return rows


def write_records(path: Path, records: list[dict]) -> None:
    from tuitune.core import atomic

    atomic.write_jsonl(path, records)


def read_records(path: Path | str) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def split_holdout(records: list[dict], holdout: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, held out): `holdout` records drawn with `seed` as whole duplicate groups
    (tuitune.core.data.groups: exact and near-duplicate prompts by the project's MinHash measure), so no copy or
    near-copy of a training record is held out; both lists keep the input order."""
    if holdout <= 0:
        return list(records), []
    from tuitune.core.data.groups import duplicate_groups, grouped_split

    split = grouped_split(duplicate_groups([_prompt_sample(r) for r in records]), holdout, seed)
    held = set(split.test)
    return ([r for i, r in enumerate(records) if i not in held], [r for i, r in enumerate(records) if i in held])


def _prompt_sample(record: dict):
    """The record's prompt as a Sample (instruction = the last user turn, input = the turns before it) and its
    answer, for duplicate grouping."""
    from tuitune.core.data.samples import Sample

    msgs = record.get("messages") or record.get("prompt")
    if isinstance(msgs, list) and msgs and all(isinstance(m, dict) for m in msgs):
        users = [str(m.get("content", "")) for m in msgs if m.get("role") == "user"]
        answer = msgs[-1].get("content", "") if msgs[-1].get("role") == "assistant" else ""
        return Sample(instruction=users[-1] if users else "", input="\n".join(users[:-1]), output=str(answer))
    return Sample(instruction=str(record.get("text") or json.dumps(record, sort_keys=True)), output="")
