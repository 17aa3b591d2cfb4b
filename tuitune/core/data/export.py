"""Export: Alpaca (LLaMA-Factory schema), ShareGPT, OpenAI chat JSONL, preference pairs (DPO), a seeded
train/test split and the LLaMA-Factory `dataset_info.json` entry. Every file is written atomically."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from tuitune.core import atomic
from tuitune.core.data.preferences import preference_pairs
from tuitune.core.data.samples import Sample
from tuitune.core.data.store import Store

EXPORT_FORMATS = ("alpaca", "sharegpt", "openai", "dpo")
SUFFIX = {"alpaca": ".json", "sharegpt": ".json", "openai": ".jsonl", "dpo": ".json"}


class ExportError(Exception):
    """Nothing to export, or an output path that cannot be used."""


@dataclass
class ExportResult:
    files: dict[str, Path] = field(default_factory=dict)  # split name -> file
    counts: dict[str, int] = field(default_factory=dict)
    dataset_info: Path | None = None


def dataset_info_entry(fmt: str, file_name: str) -> dict:
    """The LLaMA-Factory dataset_info.json entry describing one exported file."""
    if fmt == "alpaca":
        return {"file_name": file_name, "columns": {"prompt": "instruction", "query": "input", "response": "output",
                                                    "system": "system", "history": "history"}}
    if fmt == "sharegpt":
        return {"file_name": file_name, "formatting": "sharegpt",
                "columns": {"messages": "conversations", "system": "system"}}
    if fmt == "openai":
        return {"file_name": file_name, "formatting": "sharegpt", "columns": {"messages": "messages"},
                "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                         "assistant_tag": "assistant", "system_tag": "system"}}
    if fmt == "dpo":
        return {"file_name": file_name, "ranking": True,
                "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected",
                            "system": "system", "history": "history"}}
    raise ExportError(f"unknown export format {fmt!r}; expected one of {', '.join(EXPORT_FORMATS)}")


def render(fmt: str, samples: list[Sample]) -> list[dict]:
    if fmt == "alpaca":
        return [s.to_alpaca() for s in samples]
    if fmt == "sharegpt":
        return [s.to_sharegpt() for s in samples]
    if fmt == "openai":
        return [s.to_openai() for s in samples]
    raise ExportError(f"unknown export format {fmt!r}; expected one of {', '.join(EXPORT_FORMATS)}")


def split(items: list, test_size: float, seed: int) -> tuple[list, list]:
    """Seeded shuffle split; test_size is a fraction (0 < f < 1) or a count (>= 1)."""
    if test_size <= 0:
        return list(items), []
    n_test = int(test_size) if test_size >= 1 else max(1, round(len(items) * test_size))
    if n_test >= len(items):
        raise ExportError(f"--test-size {test_size} leaves no training data out of {len(items)} records")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    test_idx = set(order[:n_test])
    return ([x for i, x in enumerate(items) if i not in test_idx], [x for i, x in enumerate(items) if i in test_idx])


def _write(fmt: str, path: Path, rows: list[dict]) -> None:
    if path.suffix == ".jsonl":
        atomic.write_jsonl(path, rows)
    else:
        atomic.write_json(path, rows)


def _merge_dataset_info(folder: Path, entries: dict[str, dict]) -> Path:
    info_path = folder / "dataset_info.json"
    info = {}
    if info_path.exists():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ExportError(f"{info_path} exists but is not valid JSON ({e}); move it away and retry") from None
    info.update(entries)
    atomic.write_json(info_path, info)
    return info_path


def export(store: Store, fmt: str, output: Path | str, *, test_size: float = 0.0, seed: int = 42,
           include_seeds: bool = True, name: str = "tuitune") -> ExportResult:
    """Write the project's kept samples (seeds + accepted by default) as `fmt` to `output`.

    Without a split, `output` is the file (its folder's dataset_info.json gains an entry `name`).
    With a split, `output` is a folder holding train/test files and dataset_info.json.
    """
    output = Path(output)
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; expected one of {', '.join(EXPORT_FORMATS)}")
    if fmt == "dpo":
        rows = [p.to_llamafactory() for p in preference_pairs(store)]
        if not rows:
            raise ExportError("no preference pairs yet: edit answers or reject answers whose prompt also has an "
                              "accepted answer, then export again")
    else:
        rows = render(fmt, store.training_samples(include_seeds=include_seeds))
        if not rows:
            raise ExportError("nothing to export: no seeds or accepted samples yet (see `tuitune stats`)")
    result = ExportResult()
    if test_size > 0:
        if output.exists() and not output.is_dir():
            raise ExportError(f"{output} is a file; with --test-size the output is a folder")
        train, test = split(rows, test_size, seed)
        entries = {}
        for part, part_rows in (("train", train), ("test", test)):
            path = output / f"{part}{SUFFIX[fmt]}"
            _write(fmt, path, part_rows)
            result.files[part], result.counts[part] = path, len(part_rows)
            entries[f"{name}_{part}"] = dataset_info_entry(fmt, path.name)
        if fmt == "dpo":
            _write_trl_pairs(store, output / "trl_pairs.jsonl", seed)
        result.dataset_info = _merge_dataset_info(output, entries)
        return result
    if output.is_dir():
        output = output / f"{name}{SUFFIX[fmt]}"
    _write(fmt, output, rows)
    result.files["all"], result.counts["all"] = output, len(rows)
    if fmt == "dpo":
        _write_trl_pairs(store, output.with_name(output.stem + ".trl.jsonl"), seed)
    result.dataset_info = _merge_dataset_info(output.parent, {name: dataset_info_entry(fmt, output.name)})
    return result


def _write_trl_pairs(store: Store, path: Path, seed: int) -> None:
    """TRL's conversational preference format (prompt / chosen / rejected) beside the LLaMA-Factory file."""
    atomic.write_jsonl(path, [p.to_trl() for p in preference_pairs(store)])
