"""A column mapping for files whose columns have other names (like the `columns` of LLaMA-Factory's
dataset_info.json): `instruction=question,output=answer` reads the field `instruction` from the column
`question`. Unknown target fields are refused before the file is read; a mapped column a record (or a
Parquet/CSV file) lacks is a problem naming that column."""

from __future__ import annotations

from collections.abc import Iterable

# The fields a record may have, in tuitune's and TRL's names.
TARGETS = ("instruction", "input", "output", "system", "history", "conversations", "messages", "prompt",
           "completion", "chosen", "rejected")


class ColumnMapError(ValueError):
    """A column mapping that cannot be used (its text, an unknown target field)."""


def parse_columns(spec: str | Iterable[str] | dict | None) -> dict[str, str]:
    """{target field: source column} from "instruction=question,output=answer" (or several such strings)."""
    if not spec:
        return {}
    if isinstance(spec, dict):
        items = list(spec.items())
    else:
        texts = [spec] if isinstance(spec, str) else list(spec)
        items = []
        for text in texts:
            for part in (p.strip() for p in text.split(",")):
                if not part:
                    continue
                target, eq, source = (x.strip() for x in part.partition("="))
                if not eq or not target or not source:
                    raise ColumnMapError(f"column mapping {part!r}: expected FIELD=COLUMN, e.g. instruction=question")
                items.append((target, source))
    mapping: dict[str, str] = {}
    for target, source in items:
        if target not in TARGETS:
            raise ColumnMapError(f"column mapping {target}={source}: unknown field {target!r}; the fields are "
                                 f"{', '.join(TARGETS)}")
        if target in mapping and mapping[target] != source:
            raise ColumnMapError(f"column mapping: {target} is mapped twice ({mapping[target]} and {source})")
        mapping[target] = source
    return mapping


def map_record(data: dict, mapping: dict[str, str]) -> tuple[dict, list[tuple[str, str]]]:
    """The record with its mapped columns renamed, and problems as (field, message)."""
    if not mapping:
        return data, []
    sources = set(mapping.values())
    out = {k: v for k, v in data.items() if k not in sources}
    problems = []
    for target, source in mapping.items():
        if source not in data:
            problems.append((source, f"missing; the column mapping reads {target} from this column"))
        elif target in out:
            problems.append((target, _both(target, source)))
        else:
            out[target] = data[source]
    return out, problems


def _both(target: str, source: str) -> str:
    return (f"the data has a {target} of its own beside {source}, which the column mapping makes its {target}; "
            f"drop one of the two columns, or map another")


def map_columns(columns: list[str], mapping: dict[str, str]) -> tuple[list[str], list[tuple[str, str]]]:
    """A columnar file's column names after the mapping, and problems as (column, message): mapped columns the
    file does not have, and a target the file already has as a column of its own."""
    if not mapping:
        return list(columns), []
    have, sources = set(columns), set(mapping.values())
    problems = []
    for target, source in mapping.items():
        if source not in have:
            problems.append((source, (f"no such column in the file (the column mapping reads {target} from it); "
                                      f"its columns: {', '.join(columns)}")))
        elif target in have and target not in sources:
            problems.append((target, _both(target, source)))
    renamed = [c for c in columns if c not in sources] + [t for t, s in mapping.items() if s in have]
    return renamed, problems
