"""Import a dataset (a file, a save_to_disk folder, an hf:// dataset from the cache) into a project: parse +
validate (formats.py), tag as seeds/accepted/pending, store all or nothing (a long import stages its rows in
short transactions and publishes them at once: staging.py), and count duplicates (kept: removing them is the
explicit `dedup`). Used by CLI and TUI."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tuitune.core.data.formats import MAX_IMPORT_BYTES, Parsed, read_file
from tuitune.core.data.staging import add_samples_staged
from tuitune.core.data.store import Store

# --as VALUE -> (origin, status) of the imported samples. Data a user brings is trusted: default "accepted".
IMPORT_AS: dict[str, tuple[str, str]] = {"seeds": ("seed", "accepted"), "accepted": ("import", "accepted"),
                                         "pending": ("import", "pending")}


@dataclass
class ImportReport:
    parsed: Parsed
    stored: int
    already_in_project: int  # records equal (normalised, system prompt included) to a sample the project had

    @property
    def pairs(self) -> int:
        """Preference pairs among the stored records (DPO training and `export --format dpo` use them)."""
        return self.parsed.pairs


def import_file(store: Store, path: Path | str, *, fmt: str = "auto", as_: str = "accepted",
                skip_invalid: bool = False, max_bytes: int = MAX_IMPORT_BYTES,
                on_progress: Callable[[int], None] | None = None, columns: str | dict | None = None) -> ImportReport:
    """Raises formats.FormatError (nothing stored) on invalid input unless skip_invalid. Only regular files of
    at most max_bytes are read. `columns` maps fields to other column names ("instruction=question")."""
    if as_ not in IMPORT_AS:
        raise ValueError(f"import as {as_!r}: expected one of {', '.join(IMPORT_AS)}")
    parsed = read_file(path, fmt, skip_invalid=skip_invalid, max_bytes=max_bytes, columns=columns)
    origin, status = IMPORT_AS[as_]
    existing = store.existing_keys()
    samples = [s.with_(origin=origin, status=status) for s in parsed.samples]
    stored = add_samples_staged(store, samples, source=str(path), on_progress=on_progress)
    return ImportReport(parsed, stored, sum(1 for s in samples if s.key() in existing))
