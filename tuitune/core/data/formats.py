"""Import and validate Alpaca (JSON/JSONL, incl. Stanford self-instruct seed tasks), ShareGPT, OpenAI chat
JSONL and CSV. Every problem names the file, the record (line for JSONL/CSV, index for JSON arrays) and the
field, and says what was expected. Export lives in `export.py`."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tuitune.core.data.samples import Sample

FORMATS = ("alpaca", "sharegpt", "openai", "csv")
MAX_LISTED_ISSUES = 50
# The largest file an import reads unless told otherwise: 512 MiB is about 1.5 million Alpaca records, and
# parsing it takes a few GiB of memory. Callers may raise it (the import command's --max-size).
MAX_IMPORT_BYTES = 512 * 1024 * 1024
_TOO_DEEP = "nested too deeply for a dataset record (JSON records are objects of strings and short lists)"


@dataclass(frozen=True)
class Issue:
    file: str
    where: str  # "line 3", "record [2]", "row at line 5", or "" for the whole file
    field: str  # "" when the problem is the record itself
    message: str

    def __str__(self) -> str:
        loc = ":".join(p for p in (self.file, self.where) if p)
        return f"{loc}: {self.field + ': ' if self.field else ''}{self.message}"


class FormatError(ValueError):
    """A file that cannot be imported as it is. `issues` lists every problem found (up to a cap). `remedy`
    names the read_file argument that would get past it ("skip_invalid", "max_bytes"), for each face to say
    in its own words (a CLI flag, a TUI command); core's message names no flag."""

    def __init__(self, issues: list[Issue], total: int | None = None, hint: str = "", remedy: str | None = None):
        self.issues = issues
        self.total = total if total is not None else len(issues)
        self.hint = hint
        self.remedy = remedy
        super().__init__(self.render())

    def render(self) -> str:
        shown = self.issues[:MAX_LISTED_ISSUES]
        lines = [str(i) for i in shown]
        if self.total > len(shown):
            lines.append(f"... and {self.total - len(shown)} more problems")
        if self.hint:
            lines.append(self.hint)
        return "\n".join(lines)


@dataclass
class Parsed:
    """What a file held: valid samples (in file order), the detected format, and skipped-record problems."""

    path: Path
    format: str
    samples: list[Sample]
    issues: list[Issue] = field(default_factory=list)
    skipped_records: int = 0

    @property
    def duplicates(self) -> int:
        """Records in the file that repeat an earlier record of the same file (after normalisation)."""
        return len(self.samples) - len({s.key() for s in self.samples})


class _Record:
    """Collects problems for one record; `where` is how the user finds it in the file."""

    def __init__(self, file: str, where: str, data):
        self.file, self.where, self.data, self.issues = file, where, data, []

    def problem(self, fld: str, message: str) -> None:
        self.issues.append(Issue(self.file, self.where, fld, message))

    def text(self, key: str, *, required: bool, allow_empty: bool = False, obj=None, prefix: str = "") -> str:
        obj = self.data if obj is None else obj
        name = prefix + key
        if key not in obj or obj[key] is None:
            if required:
                self.problem(name, "missing; expected a non-empty string")
            return ""
        val = obj[key]
        if not isinstance(val, str):
            self.problem(name, f"expected a string, got {_kind(val)}")
            return ""
        if required and not allow_empty and not val.strip():
            self.problem(name, "is empty; expected a non-empty string")
        return val


def _kind(val) -> str:
    return {dict: "an object", list: "a list", bool: "a boolean", int: "a number", float: "a number",
            type(None): "null", str: "a string"}.get(type(val), type(val).__name__)


# ---- per-format record parsers: (record) -> list[Sample] ---------------------------------------------

def _parse_history(rec: _Record) -> list[tuple[str, str]]:
    hist = rec.data.get("history")
    if hist is None:
        return []
    if not isinstance(hist, list):
        rec.problem("history", f"expected a list of [user, assistant] pairs, got {_kind(hist)}")
        return []
    out = []
    for i, pair in enumerate(hist):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            rec.problem(f"history[{i}]", "expected a pair [user, assistant] of two strings")
            continue
        out.append((pair[0], pair[1]))
    return out


def _alpaca(rec: _Record) -> list[Sample]:
    if "instances" in rec.data:  # Stanford Alpaca self-instruct seed task
        return _stanford(rec)
    instruction = rec.text("instruction", required=True)
    input_ = rec.text("input", required=False)
    output = rec.text("output", required=True)
    system = rec.text("system", required=False)
    history = _parse_history(rec)
    return [Sample(instruction=instruction, input=input_, output=output, system=system, history=history)]


def _stanford(rec: _Record) -> list[Sample]:
    instruction = rec.text("instruction", required=True)
    instances = rec.data.get("instances")
    if not isinstance(instances, list) or not instances:
        rec.problem("instances", "expected a non-empty list of {input, output} objects")
        return []
    out = []
    for i, inst in enumerate(instances):
        if not isinstance(inst, dict):
            rec.problem(f"instances[{i}]", f"expected an object with input and output, got {_kind(inst)}")
            continue
        input_ = rec.text("input", required=False, obj=inst, prefix=f"instances[{i}].")
        output = rec.text("output", required=True, obj=inst, prefix=f"instances[{i}].")
        out.append(Sample(instruction=instruction, input=input_, output=output))
    return out


_ROLE = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system",
         "model": "assistant"}


def _chat(rec: _Record, list_key: str, role_key: str, content_key: str) -> list[Sample]:
    msgs = rec.data.get(list_key)
    if not isinstance(msgs, list) or not msgs:
        rec.problem(list_key, f"expected a non-empty list of messages, got {_kind(msgs)}")
        return []
    system = rec.text("system", required=False)
    turns: list[tuple[str, str]] = []
    for i, m in enumerate(msgs):
        where = f"{list_key}[{i}]"
        if not isinstance(m, dict):
            rec.problem(where, f"expected an object with {role_key!r} and {content_key!r}, got {_kind(m)}")
            continue
        role = _ROLE.get(m.get(role_key)) if isinstance(m.get(role_key), str) else None
        if role is None:
            rec.problem(f"{where}.{role_key}", f"expected one of human/gpt/system (or user/assistant), "
                                               f"got {m.get(role_key)!r}")
            continue
        content = rec.text(content_key, required=True, obj=m, prefix=f"{where}.")
        if role == "system":
            if i != 0:
                rec.problem(where, "a system message is only allowed first")
            system = content
            continue
        expected = "user" if len(turns) % 2 == 0 else "assistant"
        if role != expected:
            rec.problem(f"{where}.{role_key}", f"expected a {expected} turn here (turns must alternate user, "
                                               f"assistant, starting with user), got {role}")
            continue
        turns.append((role, content))
    if rec.issues:
        return []
    if len(turns) < 2 or len(turns) % 2:
        rec.problem(list_key, "expected user/assistant pairs ending with an assistant answer")
        return []
    pairs = [(turns[i][1], turns[i + 1][1]) for i in range(0, len(turns), 2)]
    (instruction, output), history = pairs[-1], pairs[:-1]
    return [Sample(instruction=instruction, output=output, system=system, history=history)]


def _sharegpt(rec: _Record) -> list[Sample]:
    if "conversations" in rec.data:
        return _chat(rec, "conversations", "from", "value")
    return _chat(rec, "messages", "role", "content")


def _openai(rec: _Record) -> list[Sample]:
    return _chat(rec, "messages", "role", "content")


PARSERS: dict[str, Callable[[_Record], list[Sample]]] = {"alpaca": _alpaca, "sharegpt": _sharegpt,
                                                         "openai": _openai}


def _detect(data: dict) -> str | None:
    if "conversations" in data:
        return "sharegpt"
    if "messages" in data:
        return "openai"
    if "instruction" in data:
        return "alpaca"
    return None


# ---- file level -------------------------------------------------------------------------------------

def _decode(path: Path, raw: bytes) -> str:
    name = str(path)
    if not raw.strip():
        raise FormatError([Issue(name, "", "", "the file is empty; expected records in Alpaca, ShareGPT, "
                                              "OpenAI JSONL or CSV format")])
    try:
        return raw.decode("utf-8-sig")  # a UTF-8 byte-order mark is accepted and dropped
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise FormatError([Issue(name, f"line {line}", "", f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset "
                                                            f"{e.start}); save the file as UTF-8 and retry")]) from None


def _json_records(path: Path, text: str) -> tuple[list[tuple[str, object]], list[Issue]]:
    """[(where, record)] from a JSON array/object or from JSONL, plus syntax problems."""
    name = str(path)
    if path.suffix.lower() != ".jsonl":
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
            return [], [Issue(name, "", "", f"expected a JSON array of records or JSON Lines, got {_kind(data)}")]
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


def _csv_records(path: Path, text: str) -> tuple[list[tuple[str, object]], list[Issue]]:
    # csv refuses fields over 128 KiB by default; a long answer is legitimate data (the file size is bounded).
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        return _csv_rows(path, reader)
    except csv.Error as e:
        return [], [Issue(str(path), f"line {reader.line_num}", "", f"not readable as CSV ({e}); save it as "
                                                                    f"comma-separated UTF-8 text and retry")]


def _csv_rows(path: Path, reader: csv.DictReader) -> tuple[list[tuple[str, object]], list[Issue]]:
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in ("instruction", "output") if c not in header]
    if missing:
        return [], [Issue(str(path), "line 1", "", f"missing column(s) {', '.join(missing)}; expected a header "
                                                   f"with instruction, output and optionally input, system")]
    reader.fieldnames = header
    records = []
    for row in reader:
        # CSV cannot express "no value": an empty cell is an empty string.
        records.append((f"line {reader.line_num}", {k: (v or "") for k, v in row.items() if k in
                                                     ("instruction", "input", "output", "system")}))
    return records, []


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def read_bytes_bounded(path: Path, max_bytes: int = MAX_IMPORT_BYTES) -> bytes:
    """The bytes of a regular file of at most max_bytes. Pipes, devices and folders are refused without
    reading from them (a FIFO with no writer would wait forever, /dev/zero would never end)."""
    def refuse(message: str, remedy: str | None = None) -> FormatError:
        return FormatError([Issue(str(path), "", "", message)], remedy=remedy)

    try:
        # O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting for one.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise refuse(f"cannot read the file: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS if test(st.st_mode)), "a special file")
            raise refuse(f"not a regular file ({kind}); save the data to a file and import that")
        if st.st_size > max_bytes:
            raise refuse(_too_big(st.st_size, max_bytes), "max_bytes")
        raw = f.read(max_bytes + 1)  # the file may have grown since fstat
    if len(raw) > max_bytes:
        raise refuse(_too_big(len(raw), max_bytes), "max_bytes")
    return raw


def _too_big(size: int, limit: int) -> str:
    return (f"the file is larger than the import limit ({_mib(size)} > {_mib(limit)}); split it, or raise the "
            f"limit if this machine has the memory (parsing takes several times the file size)")


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def read_file(path: Path | str, fmt: str = "auto", *, skip_invalid: bool = False,
              max_bytes: int = MAX_IMPORT_BYTES) -> Parsed:
    """Parse and validate a dataset file. Raises FormatError listing every problem, unless skip_invalid, in
    which case invalid records are left out and counted. Never returns a partially validated record.
    Only regular files of at most max_bytes are read."""
    path = Path(path)
    if fmt not in ("auto", *FORMATS):
        raise FormatError([Issue(str(path), "", "", f"unknown format {fmt!r}; expected auto or one of "
                                                    f"{', '.join(FORMATS)}")])
    raw = read_bytes_bounded(path, max_bytes)
    text = _decode(path, raw)
    is_csv = fmt == "csv" or (fmt == "auto" and path.suffix.lower() in (".csv", ".tsv"))
    records, issues = (_csv_records if is_csv else _json_records)(path, text)
    detected = "csv" if is_csv else fmt
    samples: list[Sample] = []
    bad = len(issues)
    for where, data in records:
        rec = _Record(str(path), where, data)
        if not isinstance(data, dict):
            rec.problem("", f"expected an object, got {_kind(data)}")
        else:
            kind = "alpaca" if is_csv else (fmt if fmt != "auto" else _detect(data))
            if kind is None:
                rec.problem("", "cannot tell the format: expected `instruction` (Alpaca), `conversations` "
                                "(ShareGPT) or `messages` (OpenAI chat)")
            else:
                if detected == "auto":
                    detected = "csv" if is_csv else kind
                got = PARSERS[kind](rec)
                if not rec.issues:
                    samples.extend(got)
        if rec.issues:
            bad += 1
            issues.extend(rec.issues)
    if not records and not issues:
        issues.append(Issue(str(path), "", "", "no records found"))
        bad = 1
    if issues and not skip_invalid:
        raise FormatError(issues, hint=f"{bad} of {max(len(records), bad)} records have problems; nothing was "
                                       f"imported. Fix them, or import only the valid ones.", remedy="skip_invalid")
    if not samples and issues:
        raise FormatError(issues, hint="no valid records in the file; nothing was imported.")
    return Parsed(path, detected if detected != "auto" else "alpaca", samples, issues, bad)
