"""Export: Alpaca (LLaMA-Factory schema), ShareGPT, OpenAI chat JSONL, preference pairs (DPO), a train/test
split that keeps duplicate groups on one side, and the LLaMA-Factory `dataset_info.json` entries.

Contract with the readers (LLaMA-Factory 0.9.5 raises KeyError for a declared column a record lacks):
- every record of a file has the same keys: when any record has a system prompt or a history, every record of
  that file has the key (empty where it has none), and the file's dataset_info.json entry declares exactly the
  columns its records have (per file, so a split's train and test files get their own entries);
- every file name ends in .json or .jsonl;
- records without their own system prompt carry the task's (a record's own wins);
- everything is checked (paths, the existing dataset_info.json, entry names) before the first file is written,
  and every file is written atomically (`core.atomic`: the umask or the replaced file's mode is kept, a symlink
  is followed, a device node or FIFO is refused).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tuitune.core import atomic
from tuitune.core.data.groups import duplicate_groups, grouped_split, holdout_count
from tuitune.core.data.preferences import preference_pairs
from tuitune.core.data.task_system import kept_samples
from tuitune.core.words import plural

EXPORT_FORMATS = ("alpaca", "sharegpt", "openai", "dpo")
SUFFIX = {"alpaca": ".json", "sharegpt": ".json", "openai": ".jsonl", "dpo": ".json"}
ALLOWED_SUFFIXES = (".json", ".jsonl")
DEFAULT_NAME = "tuitune"
# Which tool reads which export (said in the summary and in docs/formats.md).
READERS = {
    "alpaca": "LLaMA-Factory (its dataset_info.json entry; sft) and datasets.load_dataset('json'). "
              "TRL reads the openai format instead.",
    "sharegpt": "LLaMA-Factory (formatting sharegpt: from/value) and datasets.load_dataset('json'). "
                "Not TRL: it reads role/content only; use the openai format for TRL.",
    "openai": "TRL (SFTTrainer: messages with role/content), LLaMA-Factory (sharegpt formatting with role/content "
              "tags) and datasets.load_dataset('json').",
    "dpo": "LLaMA-Factory (ranking: stage rm/dpo) and datasets.load_dataset('json'); the .trl.jsonl files: "
           "TRL (DPOTrainer: prompt/chosen/rejected).",
}
# Optional keys and their empty value, per format: present in all records of a file or in none.
_OPTIONAL = {"alpaca": {"system": "", "history": []}, "sharegpt": {"system": ""}, "openai": {},
             "dpo": {"system": "", "history": []}}


class ExportError(Exception):
    """Nothing to export, or an output path, test size or dataset_info.json that cannot be used."""


@dataclass
class ExportResult:
    files: dict[str, Path] = field(default_factory=dict)  # part ("all", "train", "test", "trl_train", ...) -> file
    counts: dict[str, int] = field(default_factory=dict)
    dataset_info: Path | None = None
    entries: list[str] = field(default_factory=list)  # dataset_info.json entry names written
    groups: int = 0  # with a split: duplicate groups among the records
    kept_together: int = 0  # groups of 2+ records, each wholly on one side
    records_in_groups: int = 0
    readers: str = ""

    def summary(self) -> list[str]:
        """Lines for the user: files, split groups, entries, and which tools read the format."""
        lines = [f"{part}: {plural(self.counts[part], 'record')} -> {path}" for part, path in self.files.items()]
        if "test" in self.files:
            kept = plural(self.kept_together, "group of exact or near duplicates", "groups of exact or near duplicates")
            lines.append(f"split: {plural(self.groups, 'prompt group')}; {kept} "
                         f"({plural(self.records_in_groups, 'record')}) each kept on one side")
        lines.append(f"dataset_info.json: {self.dataset_info} (entries: {', '.join(self.entries)})")
        lines.append(f"read by: {self.readers}")
        return lines


def default_name(fmt: str) -> str:
    """The dataset_info.json entry name per format, distinct so two formats in one folder keep both entries."""
    return DEFAULT_NAME if fmt == "alpaca" else f"{DEFAULT_NAME}_{fmt}"


def dataset_info_entry(fmt: str, file_name: str, rows: list[dict] | None = None) -> dict:
    """The LLaMA-Factory dataset_info.json entry describing one exported file: optional columns (system,
    history) only when every record in `rows` has them."""
    _check_format(fmt)
    keys = set.intersection(*(set(r) for r in rows)) if rows else set()
    if fmt in ("alpaca", "dpo"):
        cols = {"prompt": "instruction", "query": "input"}
        cols.update({"response": "output"} if fmt == "alpaca" else {"chosen": "chosen", "rejected": "rejected"})
        cols.update({k: k for k in ("system", "history") if k in keys})
        entry = {"file_name": file_name, "columns": cols}
        if fmt == "dpo":
            entry["ranking"] = True
        return entry
    if fmt == "sharegpt":
        cols = {"messages": "conversations", **({"system": "system"} if "system" in keys else {})}
        return {"file_name": file_name, "formatting": "sharegpt", "columns": cols}  # default tags: from/value
    return {"file_name": file_name, "formatting": "sharegpt", "columns": {"messages": "messages"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                     "assistant_tag": "assistant", "system_tag": "system"}}


def render(fmt: str, samples) -> list[dict]:
    if fmt == "alpaca":
        rows = [s.to_alpaca() for s in samples]
    elif fmt == "sharegpt":
        rows = [s.to_sharegpt() for s in samples]
    elif fmt == "openai":
        rows = [s.to_openai() for s in samples]
    else:
        raise ExportError(f"cannot render samples as {fmt!r}; expected alpaca, sharegpt or openai")
    return uniform_keys(fmt, rows)


def uniform_keys(fmt: str, rows: list[dict]) -> list[dict]:
    """Every record gets each optional key that any record has (empty value where it had none)."""
    present = {k for r in rows for k in _OPTIONAL[fmt] if k in r}
    if not present:
        return rows
    out = []
    for r in rows:
        r = dict(r)
        for k in _OPTIONAL[fmt]:
            if k in present and k not in r:
                r[k] = type(_OPTIONAL[fmt][k])()
        out.append(r)
    return out


def held_out_count(test_size: float, n: int) -> int:
    """Records for the test side; ExportError naming the value when it makes no sense. An int (or a whole
    float >= 1) is a count, a float in [0, 1) a fraction."""
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float)):
        raise ExportError(f"test size {test_size!r} is neither a fraction in [0, 1) nor a whole count of records")
    if isinstance(test_size, float) and test_size >= 1 and test_size.is_integer():
        test_size = int(test_size)
    try:
        count = holdout_count(n, test_size)
    except ValueError as e:
        raise ExportError(f"{e}; a split needs at least one record on each side") from None
    if test_size and not count:
        raise ExportError(f"test size {test_size!r} leaves no record for the test side out of {n}")
    return count


@dataclass
class _Plan:
    files: list[tuple[str, Path, list[dict]]] = field(default_factory=list)  # (part, path, rows)
    entries: dict[str, dict] = field(default_factory=dict)


def export(store, fmt: str, output: Path | str, *, test_size: float = 0, seed: int = 42,
           include_seeds: bool = True, name: str | None = None) -> ExportResult:
    """Write the project's kept samples (seeds + accepted by default) as `fmt` to `output`.

    Without a split, `output` is the file (a folder: `<name><suffix>` in it; no suffix: the format's is added)
    and its folder's dataset_info.json gains the entry `name` (default: `default_name(fmt)`).
    With a split, `output` is a folder holding train/test files (and TRL's train/test pairs for dpo) plus
    dataset_info.json entries `<name>_train` and `<name>_test`.
    """
    _check_format(fmt)
    name = name or default_name(fmt)
    output = Path(output)
    if fmt == "dpo":
        pairs = preference_pairs(store)
        if not pairs:
            raise ExportError("no preference pairs yet: edit answers or reject answers whose prompt also has an "
                              "accepted answer, then export again")
        prompts = [p.prompt for p in pairs]
        rows = uniform_keys("dpo", [p.to_llamafactory() for p in pairs])
        trl_rows = [p.to_trl() for p in pairs]
    else:
        prompts = kept_samples(store, include_seeds=include_seeds)
        if not prompts:
            raise ExportError("nothing to export: no seeds or accepted samples yet (see the project's stats)")
        rows, trl_rows = render(fmt, prompts), []
    n_test = held_out_count(test_size, len(rows))
    result, plan = ExportResult(readers=READERS[fmt]), _Plan()
    if n_test:
        if output.exists() and not output.is_dir():
            raise ExportError(f"{output} is a file; with a test split the output is a folder")
        sp = grouped_split(duplicate_groups(prompts), n_test, seed)
        if not sp.test:
            raise ExportError(f"a test side of {n_test} records cannot be drawn without separating duplicates: the "
                              f"smallest group of identical or near-identical prompts is larger; raise the test "
                              f"size")
        result.groups, result.kept_together, result.records_in_groups = (sp.groups, sp.kept_together,
                                                                        sp.records_in_groups)
        folder = output
        for part, idx in (("train", sp.train), ("test", sp.test)):
            part_rows = uniform_keys(fmt, [rows[i] for i in idx])
            path = output / f"{part}{SUFFIX[fmt]}"
            plan.files.append((part, path, part_rows))
            plan.entries[f"{name}_{part}"] = dataset_info_entry(fmt, path.name, part_rows)
            if fmt == "dpo":
                plan.files.append((f"trl_{part}", output / f"{part}.trl.jsonl", [trl_rows[i] for i in idx]))
    else:
        if output.is_dir():
            output = output / f"{name}{SUFFIX[fmt]}"
        elif output.exists() or output.is_symlink():
            _refuse_special(output)  # a device node or FIFO at the path, even without a suffix
        if not output.suffix:
            output = output.with_name(output.name + SUFFIX[fmt])
        elif output.suffix not in ALLOWED_SUFFIXES:
            raise ExportError(f"{output}: an export file name must end in .json or .jsonl (LLaMA-Factory and "
                              f"datasets pick the reader from it); got {output.suffix!r}")
        folder = output.parent
        plan.files.append(("all", output, rows))
        plan.entries[name] = dataset_info_entry(fmt, output.name, rows)
        if fmt == "dpo":
            plan.files.append(("trl", output.with_name(output.stem + ".trl.jsonl"), trl_rows))
    info_path, info = _check_plan(folder, plan)
    info.update(plan.entries)
    try:
        for part, path, part_rows in plan.files:
            _write(path, part_rows)
            result.files[part], result.counts[part] = path, len(part_rows)
        atomic.write_json(info_path, info)
    except OSError as e:
        done = ", ".join(str(p) for p in result.files.values()) or "nothing"
        raise ExportError(f"cannot write {e.filename or folder}: {e.strerror or e} (written before the error: "
                          f"{done}); check the folder's permissions and free space") from None
    result.dataset_info, result.entries = info_path, list(plan.entries)
    return result


def _check_format(fmt: str) -> None:
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; expected one of {', '.join(EXPORT_FORMATS)}")


def _check_plan(folder: Path, plan: _Plan) -> tuple[Path, dict]:
    """Everything that can fail, before the first write: output paths (special files), the existing
    dataset_info.json (valid JSON object) and entry names (never silently replacing another export's entry)."""
    info_path = folder / "dataset_info.json"
    for _, path, _ in plan.files:
        _refuse_special(path)
    _refuse_special(info_path)
    info = _read_dataset_info(info_path)
    ours = {e["file_name"] for e in plan.entries.values()}
    for entry_name, entry in info.items():
        file_name = entry.get("file_name") if isinstance(entry, dict) else None
        if entry_name in plan.entries:
            if file_name and file_name not in ours and (folder / file_name).exists():
                raise ExportError(f"{info_path}: the entry {entry_name!r} already describes {file_name}, another "
                                  f"export in this folder; choose another dataset name or output folder (or "
                                  f"remove that entry)")
        elif file_name in ours:
            raise ExportError(f"{info_path}: {folder / file_name} belongs to the entry {entry_name!r} (another "
                              f"export); export into another folder or file name, or remove that entry")
    return info_path, info


def _refuse_special(path: Path) -> None:
    try:
        atomic.target_of(path)
    except atomic.NotARegularFile as e:
        raise ExportError(str(e)) from None


def _read_dataset_info(info_path: Path) -> dict:
    if not info_path.exists():
        return {}
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ExportError(f"{info_path} exists but is not valid JSON ({e}); nothing was written. Fix or move it "
                          f"away and export again") from None
    if not isinstance(info, dict):
        raise ExportError(f"{info_path} is not a JSON object of dataset entries (it holds a "
                          f"{type(info).__name__}); nothing was written. Fix or move it away and export again")
    return info


def _write(path: Path, rows: list[dict]) -> None:
    if path.suffix == ".jsonl":
        atomic.write_jsonl(path, rows)
    else:
        atomic.write_json(path, rows)
