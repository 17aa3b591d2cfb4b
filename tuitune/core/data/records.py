"""What the importers share: a problem found in a file (`Issue`), the error listing them (`FormatError`),
and `Record`, which collects the problems of one record while its fields are read."""

from __future__ import annotations

from dataclasses import dataclass

MAX_LISTED_ISSUES = 50


@dataclass(frozen=True)
class Issue:
    file: str
    where: str  # "line 3", "record [2]", or "" for the whole file
    field: str  # "" when the problem is the record itself
    message: str

    def __str__(self) -> str:
        loc = ":".join(p for p in (self.file, self.where) if p)
        return f"{loc}: {self.field + ': ' if self.field else ''}{self.message}"


class FormatError(ValueError):
    """A file that cannot be imported as it is. `issues` lists every problem found (up to a cap). `remedy`
    names the read_file argument that would get past it ("skip_invalid", "max_bytes", "columns"), for each
    face to say in its own words (a CLI flag, a TUI command); core's message names no flag."""

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


def refuse(file: str, message: str, *, where: str = "", field: str = "", remedy: str | None = None) -> FormatError:
    """A FormatError with a single problem (a file that cannot be read at all)."""
    return FormatError([Issue(str(file), where, field, message)], remedy=remedy)


def kind_of(val) -> str:
    """How a message names a JSON value's type ("a string", "a list", "null")."""
    return {dict: "an object", list: "a list", bool: "a boolean", int: "a number", float: "a number",
            type(None): "null", str: "a string", bytes: "bytes"}.get(type(val), type(val).__name__)


class Record:
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
            self.problem(name, f"expected a string, got {kind_of(val)}")
            return ""
        if required and not allow_empty and not val.strip():
            self.problem(name, "is empty; expected a non-empty string")
        return val
