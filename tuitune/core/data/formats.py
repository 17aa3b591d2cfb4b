"""Import and validate Alpaca (JSON/JSONL, incl. Stanford self-instruct seed tasks and the ranking variant),
ShareGPT, OpenAI chat, TRL's prompt/completion and preference formats (trl_formats.py) and CSV, from any
source sources.py reads (text files, gzip, Parquet, a save_to_disk folder, hf:// from the cache). Every
problem names the file, the record (line for JSONL/CSV, index for JSON arrays and columnar rows) and the
field, and says what was expected. Export lives in `export.py`."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tuitune.core.data import trl_formats
from tuitune.core.data.columns import TARGETS, ColumnMapError, map_columns, map_record, parse_columns
from tuitune.core.data.messages import answer_pairs, read_turns, refuse_tool_definitions
from tuitune.core.data.records import MAX_LISTED_ISSUES, FormatError, Issue, Record, kind_of, refuse
from tuitune.core.data.samples import Sample
from tuitune.core.data.sources import MAX_IMPORT_BYTES, TablePart, TextPart, parts, read_bytes_bounded

__all__ = ["FORMATS", "MAX_IMPORT_BYTES", "MAX_LISTED_ISSUES", "FormatError", "Issue", "Parsed", "read_bytes_bounded",
           "read_file"]

FORMATS = ("alpaca", "sharegpt", "openai", "trl", "csv")
_TOO_DEEP = "nested too deeply for a dataset record (JSON records are objects of strings and short lists)"
_EXPECTED = ("expected `instruction` (Alpaca), `conversations` (ShareGPT), `messages` (OpenAI chat), `prompt` + "
             "`completion` (TRL) or `chosen` + `rejected` (preference pairs)")


@dataclass
class Parsed:
    """What a source held: valid samples (in file order), the detected format, and skipped-record problems."""

    path: Path | str
    format: str
    samples: list[Sample]
    issues: list[Issue] = field(default_factory=list)
    skipped_records: int = 0
    container: str = ""  # "parquet", "gzip", "arrow" (save_to_disk) or "" for plain text

    @property
    def duplicates(self) -> int:
        """Records in the file that repeat an earlier record of the same file (after normalisation)."""
        return len(self.samples) - len({s.key() for s in self.samples})

    @property
    def pairs(self) -> int:
        """Samples that are preference pairs (chosen answer + rejected answer)."""
        return sum(1 for s in self.samples if s.original)


# ---- per-format record parsers: (record) -> list[Sample] ---------------------------------------------

def parse_history(rec: Record) -> list[tuple[str, str]]:
    hist = rec.data.get("history")
    if hist is None:
        return []
    if not isinstance(hist, list):
        rec.problem("history", f"expected a list of [user, assistant] pairs, got {kind_of(hist)}")
        return []
    out = []
    for i, pair in enumerate(hist):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            rec.problem(f"history[{i}]", "expected a pair [user, assistant] of two strings")
            continue
        out.append((pair[0], pair[1]))
    return out


def _alpaca(rec: Record) -> list[Sample]:
    if "instances" in rec.data:  # Stanford Alpaca self-instruct seed task
        return _stanford(rec)
    instruction = rec.text("instruction", required=True)
    input_ = rec.text("input", required=False)
    output = rec.text("output", required=True)
    system = rec.text("system", required=False)
    history = parse_history(rec)
    return [Sample(instruction=instruction, input=input_, output=output, system=system, history=history)]


def _stanford(rec: Record) -> list[Sample]:
    instruction = rec.text("instruction", required=True)
    instances = rec.data.get("instances")
    if not isinstance(instances, list) or not instances:
        rec.problem("instances", "expected a non-empty list of {input, output} objects")
        return []
    out = []
    for i, inst in enumerate(instances):
        if not isinstance(inst, dict):
            rec.problem(f"instances[{i}]", f"expected an object with input and output, got {kind_of(inst)}")
            continue
        input_ = rec.text("input", required=False, obj=inst, prefix=f"instances[{i}].")
        output = rec.text("output", required=True, obj=inst, prefix=f"instances[{i}].")
        out.append(Sample(instruction=instruction, input=input_, output=output))
    return out


def _chat(rec: Record, list_key: str, role_key: str, content_key: str) -> list[Sample]:
    """A whole conversation ending with the assistant's answer; tool use is refused by name."""
    refuse_tool_definitions(rec)
    system, turns = read_turns(rec, list_key, rec.data.get(list_key), role_key, content_key,
                               system=rec.text("system", required=False))
    if rec.issues:
        return []
    pairs = answer_pairs(rec, list_key, turns)
    if pairs is None:
        return []
    (instruction, output), history = pairs[-1], pairs[:-1]
    return [Sample(instruction=instruction, output=output, system=system, history=history)]


def _sharegpt(rec: Record) -> list[Sample]:
    if "conversations" in rec.data:
        return _chat(rec, "conversations", "from", "value")
    return _chat(rec, "messages", "role", "content")


def _openai(rec: Record) -> list[Sample]:
    return _chat(rec, "messages", "role", "content")


# Record kinds: parser and the name the user sees.
PARSERS: dict[str, Callable[[Record], list[Sample]]] = {
    "alpaca": _alpaca, "alpaca ranking": trl_formats.alpaca_ranking, "sharegpt": _sharegpt,
    "sharegpt ranking": trl_formats.sharegpt_ranking, "openai": _openai,
    "trl prompt-completion": trl_formats.trl_prompt_completion, "trl preference": trl_formats.trl_preference,
    "openai preference": trl_formats.openai_preference}
# --format FORMAT -> the record kinds it covers (the first is used when a record fits none of them).
FAMILY = {"alpaca": ("alpaca", "alpaca ranking"), "csv": ("alpaca", "alpaca ranking", "trl prompt-completion",
                                                           "trl preference"),
          "sharegpt": ("sharegpt", "sharegpt ranking"), "openai": ("openai", "sharegpt ranking", "openai preference"),
          "trl": ("trl prompt-completion", "trl preference")}
# Columns a columnar file (Parquet, Arrow, CSV) needs for each record kind.
REQUIRED = {"alpaca": ("instruction", "output"), "alpaca ranking": ("instruction", "chosen", "rejected"),
            "sharegpt": (), "sharegpt ranking": ("chosen", "rejected"), "openai": ("messages",),
            "trl prompt-completion": ("prompt", "completion"), "trl preference": ("chosen", "rejected"),
            "openai preference": ("input", "preferred_output", "non_preferred_output")}


def _detect(data: dict) -> str | None:
    if "preferred_output" in data or "non_preferred_output" in data:
        return "openai preference"
    pref = "chosen" in data or "rejected" in data
    if "conversations" in data:
        return "sharegpt ranking" if pref else "sharegpt"
    if "messages" in data:
        return "sharegpt ranking" if pref else "openai"
    if "instruction" in data:
        return "alpaca ranking" if pref else "alpaca"
    if pref:
        return "trl preference"
    if "prompt" in data or "completion" in data:
        return "trl prompt-completion"
    return None


def _kind_for(fmt: str, data: dict) -> str | None:
    kind = _detect(data)
    if fmt == "auto":
        return kind
    return kind if kind in FAMILY[fmt] else FAMILY[fmt][0]


def _unknown_shape(data: dict) -> str:
    if "text" in data:
        return ("cannot tell the format: a `text` record is plain text for pretraining, not an example with an "
                "answer; " + _EXPECTED)
    return "cannot tell the format: " + _EXPECTED


# ---- text files -----------------------------------------------------------------------------------------

def _json_records(part: TextPart) -> tuple[list[tuple[str, object]], list[Issue]]:
    """[(where, record)] from a JSON array/object or from JSONL, plus syntax problems."""
    name, text = part.file, part.text
    if part.suffix != ".jsonl":
        try:
            data = json.loads(text)
        except RecursionError:
            return [], [Issue(name, "", "", _TOO_DEEP)]
        except json.JSONDecodeError as e:
            if e.msg != "Extra data" or text.lstrip().startswith("["):
                return [], [Issue(name, f"line {e.lineno}", "", f"invalid JSON at column {e.colno}: {e.msg}")]
        else:
            if isinstance(data, list):
                return [(f"record [{i}]", r) for i, r in enumerate(data)], []
            if isinstance(data, dict):
                return [("record [0]", data)], []
            return [], [Issue(name, "", "", f"expected a JSON array of records or JSON Lines, got {kind_of(data)}")]
    records, issues = [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((f"line {lineno}", json.loads(line)))
        except RecursionError:
            issues.append(Issue(name, f"line {lineno}", "", _TOO_DEEP))
        except json.JSONDecodeError as e:
            issues.append(Issue(name, f"line {lineno}", "", f"invalid JSON at column {e.colno}: {e.msg}"))
    return records, issues


_CSV_FIELDS = tuple(t for t in TARGETS if t not in ("history", "conversations", "messages"))


def _csv_records(part: TextPart, fmt: str, mapping: dict) -> tuple[list[tuple[str, object]], list[Issue]]:
    # csv refuses fields over 128 KiB by default; a long answer is legitimate data (the file size is bounded).
    csv.field_size_limit(max(csv.field_size_limit(), len(part.text) + 1))
    reader = csv.DictReader(io.StringIO(part.text, newline=""))
    try:
        return _csv_rows(part, reader, fmt, mapping)
    except csv.Error as e:
        return [], [Issue(part.file, f"line {reader.line_num}", "", f"not readable as CSV ({e}); save it as "
                                                                    f"comma-separated UTF-8 text and retry")]


def _csv_rows(part: TextPart, reader: csv.DictReader, fmt: str, mapping: dict):
    header = [h.strip() for h in (reader.fieldnames or [])]
    columns, problems = map_columns(header, mapping)
    if problems:
        raise FormatError([Issue(part.file, "line 1", col, msg) for col, msg in problems], remedy="columns")
    kind = _kind_for(fmt, dict.fromkeys(columns))
    missing = [c for c in REQUIRED.get(kind or "alpaca", ()) if c not in columns]
    if kind is None or missing:
        missing = missing or ["instruction", "output"]
        return [], [Issue(part.file, "line 1", "", f"missing column(s) {', '.join(missing)}; expected a header "
                                                   f"with instruction, output and optionally input, system (or "
                                                   f"prompt + completion, or chosen + rejected)")]
    reader.fieldnames = header
    records = []
    for row in reader:
        data, _ = map_record(row, mapping)  # the header was checked: no problems here
        # CSV cannot express "no value": an empty cell is an empty string.
        records.append((f"line {reader.line_num}", {k: (v or "") for k, v in data.items() if k in _CSV_FIELDS}))
    return records, []


# ---- reading a source -----------------------------------------------------------------------------------

class _Collector:
    """Parses records one by one into samples and problems."""

    def __init__(self, fmt: str, mapping: dict[str, str]):
        self.fmt, self.mapping = fmt, mapping
        self.samples: list[Sample] = []
        self.issues: list[Issue] = []
        self.records = self.bad = 0
        self.detected = "csv" if fmt == "csv" else None
        self.container = ""

    def syntax(self, issues: list[Issue]) -> None:
        self.issues.extend(issues)
        self.bad += len(issues)

    def record(self, file: str, where: str, data, *, mapped: bool = False) -> None:
        self.records += 1
        rec = Record(file, where, data)
        if not isinstance(data, dict):
            rec.problem("", f"expected an object, got {kind_of(data)}")
        else:
            if self.mapping and not mapped:
                data, problems = map_record(data, self.mapping)
                rec.data = data
                for fld, msg in problems:
                    rec.problem(fld, msg)
            kind = _kind_for(self.fmt, data)
            if rec.issues:
                pass
            elif kind is None:
                rec.problem("", _unknown_shape(data))
            else:
                self.detected = self.detected or kind
                got = PARSERS[kind](rec)
                if not rec.issues:
                    self.samples.extend(got)
        if rec.issues:
            self.bad += 1
            self.issues.extend(rec.issues)

    def text(self, part: TextPart) -> None:
        is_csv = self.fmt == "csv" or (self.fmt == "auto" and part.suffix in (".csv", ".tsv"))
        if is_csv:
            self.detected = self.detected or "csv"
        records, issues = (_csv_records(part, self.fmt, self.mapping) if is_csv else _json_records(part))
        self.syntax(issues)
        for where, data in records:
            self.record(part.file, where, data, mapped=is_csv)

    def table(self, part: TablePart) -> None:
        columns, problems = map_columns(part.columns, self.mapping)
        kind = _kind_for(self.fmt, dict.fromkeys(columns))
        if kind is None:
            problems.append(("", (f"cannot tell the format from the columns {', '.join(part.columns)}: "
                                  f"{_EXPECTED}; or map the columns to these names")))
        else:
            problems += [(c, (f"no such column; the {kind} format needs the columns {', '.join(REQUIRED[kind])}, "
                              f"this file has {', '.join(part.columns)}"))
                         for c in REQUIRED[kind] if c not in columns]
        if problems:
            raise FormatError([Issue(part.file, "", fld, msg) for fld, msg in problems], remedy="columns")
        i = 0
        for batch in part.batches():
            for row in batch:
                self.record(part.file, f"record [{i}]", row)
                i += 1


def read_file(path: Path | str, fmt: str = "auto", *, skip_invalid: bool = False,
              max_bytes: int = MAX_IMPORT_BYTES, columns: str | dict | None = None) -> Parsed:
    """Parse and validate a dataset file, a save_to_disk folder or an hf://datasets/ID. Raises FormatError
    listing every problem, unless skip_invalid, in which case invalid records are left out and counted.
    Never returns a partially validated record. Only regular files of at most max_bytes are read.
    `columns` maps fields to the file's column names ("instruction=question,output=answer")."""
    spec = str(path)
    shown: Path | str = spec if spec.startswith("hf://") else Path(path)
    if fmt not in ("auto", *FORMATS):
        raise refuse(spec, f"unknown format {fmt!r}; expected auto or one of {', '.join(FORMATS)}")
    try:
        mapping = parse_columns(columns)
    except ColumnMapError as e:
        raise refuse(spec, str(e)) from None
    col = _Collector(fmt, mapping)
    for part in parts(shown, max_bytes):
        col.container = col.container or part.container
        if isinstance(part, TextPart):
            col.text(part)
        else:
            col.table(part)
    issues, bad = col.issues, col.bad
    if not col.records and not issues:
        issues.append(Issue(spec, "", "", "no records found"))
        bad = 1
    if issues and not skip_invalid:
        raise FormatError(issues, hint=f"{bad} of {max(col.records, bad)} records have problems; nothing was "
                                       f"imported. Fix them, or import only the valid ones.", remedy="skip_invalid")
    if not col.samples and issues:
        raise FormatError(issues, hint="no valid records in the file; nothing was imported.")
    return Parsed(shown, col.detected or "alpaca", col.samples, issues, bad, col.container)
