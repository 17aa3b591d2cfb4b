"""Where import data comes from, as parts to parse: text files (JSON, JSONL, CSV, also gzip-compressed),
Parquet files (read in batches), a `datasets` save_to_disk folder (its Arrow shards) and a Hub dataset in
the local Hugging Face cache (`hf://datasets/ORG/NAME[:SPLIT]`, never downloaded).

A file's kind is told from its content (magic bytes), not only its name: a Parquet file named .jsonl is
read as Parquet, and a binary of a kind tuitune does not read (zip, xlsx, PNG, ...) is refused by name.
Every refusal is a FormatError naming the file."""

from __future__ import annotations

import gzip
import json
import os
import stat
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tuitune.core.data.records import FormatError, Issue, refuse
from tuitune.core.data.sniff import HEAD_BYTES, binary_kind

# The largest file an import reads unless told otherwise: 512 MiB is about 1.5 million Alpaca records, and
# parsing it takes a few GiB of memory. Callers may raise it (the import command's --max-size).
MAX_IMPORT_BYTES = 512 * 1024 * 1024
BATCH_ROWS = 4096  # rows per Parquet/Arrow batch turned into Python records at a time
READS = ("JSON, JSONL, CSV, Parquet, gzip-compressed JSON/JSONL/CSV (.json.gz, .jsonl.gz), a datasets "
         "save_to_disk folder, or hf://datasets/ORG/NAME from the Hugging Face cache")
HF_PREFIX = "hf://"


@dataclass
class TextPart:
    """Decoded text of one file; `suffix` (.json, .jsonl, .csv ...) is that of the data inside (a .jsonl.gz
    holds .jsonl)."""

    file: str
    text: str
    suffix: str
    container: str = ""  # "gzip" when it was compressed


@dataclass
class TablePart:
    """One columnar file (Parquet, or an Arrow shard of a save_to_disk folder): its column names, and its rows
    as lists of records, one batch at a time (records numbered from 0 across the batches)."""

    file: str
    columns: list[str]
    batches: Callable[[], Iterator[list[dict]]]
    container: str  # "parquet" | "arrow"


Part = TextPart | TablePart

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def parts(spec: str | Path, max_bytes: int = MAX_IMPORT_BYTES) -> Iterator[Part]:
    """The parts of an import source: a file, a save_to_disk folder, or an hf:// dataset ID."""
    text = str(spec)
    if text.startswith(HF_PREFIX):
        yield from hub_dataset_parts(text, max_bytes)
        return
    path = Path(spec)
    if path.is_dir():
        yield from save_to_disk_parts(path, max_bytes)
        return
    yield file_part(path, max_bytes)


# ---- one file -----------------------------------------------------------------------------------------

def open_regular(path: Path, max_bytes: int):
    """A binary file object of a regular file of at most max_bytes. Pipes, devices and folders are refused
    without reading from them (a FIFO with no writer would wait forever, /dev/zero would never end)."""
    try:
        # O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting for one.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise refuse(path, f"cannot read the file: {e.strerror}") from None
    f = os.fdopen(fd, "rb")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        f.close()
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "a special file")
        raise refuse(path, f"not a regular file ({kind}); save the data to a file and import that")
    if st.st_size > max_bytes:
        f.close()
        raise refuse(path, too_big(st.st_size, max_bytes), remedy="max_bytes")
    return f


def read_bytes_bounded(path: Path, max_bytes: int = MAX_IMPORT_BYTES) -> bytes:
    """The bytes of a regular file of at most max_bytes (see open_regular)."""
    with open_regular(path, max_bytes) as f:
        raw = f.read(max_bytes + 1)  # the file may have grown since fstat
    if len(raw) > max_bytes:
        raise refuse(path, too_big(len(raw), max_bytes), remedy="max_bytes")
    return raw


def too_big(size: int, limit: int) -> str:
    return (f"the file is larger than the import limit ({_mib(size)} > {_mib(limit)}); split it, or raise the "
            f"limit if this machine has the memory (parsing takes several times the file size)")


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def file_part(path: Path, max_bytes: int = MAX_IMPORT_BYTES) -> Part:
    f = open_regular(path, max_bytes)
    head = f.read(HEAD_BYTES)
    if head.startswith(b"PAR1") or (path.suffix.lower() == ".parquet" and binary_kind(head) is None
                                    and head.strip()):
        return parquet_part(path, f)
    try:
        raw = head + f.read(max_bytes + 1 - len(head))
    finally:
        f.close()
    if len(raw) > max_bytes:
        raise refuse(path, too_big(len(raw), max_bytes), remedy="max_bytes")
    suffix = path.suffix.lower()
    if head.startswith(b"\x1f\x8b"):
        inner = Path(path.name[:-3] if path.name.lower().endswith(".gz") else path.stem)
        return TextPart(str(path), _decode(path, _gunzip(path, raw, max_bytes), inner="gzip"), inner.suffix.lower(),
                        container="gzip")
    kind = binary_kind(head, raw)
    if kind:
        raise refuse(path, _not_read(*kind))
    return TextPart(str(path), _decode(path, raw), suffix)


def _not_read(what: str, todo: str) -> str:
    return f"{what}, which tuitune does not import{'; ' + todo if todo else ''}. It reads {READS}"


def _gunzip(path: Path, raw: bytes, max_bytes: int) -> bytes:
    """The decompressed bytes (all members), at most max_bytes of them: a gzip bomb stops at the limit."""
    d = zlib.decompressobj(wbits=31)
    out = bytearray()
    data = raw
    try:
        while data:
            out += d.decompress(data, max_bytes + 1 - len(out))
            if len(out) > max_bytes:
                raise refuse(path, f"decompressed, the data is larger than the import limit (over {_mib(max_bytes)}); "
                                   f"split it, or raise the limit if this machine has the memory", remedy="max_bytes")
            if d.unconsumed_tail:
                data = d.unconsumed_tail
                continue
            data = d.unused_data
            if data:  # another gzip member follows (concatenated .gz files)
                if not data.startswith(b"\x1f\x8b"):
                    break  # trailing garbage after the last member: gzip itself ignores it
                d = zlib.decompressobj(wbits=31)
        if not d.eof:
            raise zlib.error("the compressed data ends before its end marker")
    except (zlib.error, EOFError, gzip.BadGzipFile) as e:
        raise refuse(path, f"the gzip data is corrupt or truncated ({e}); compress the file again (gzip FILE) or "
                           f"import it uncompressed") from None
    return bytes(out)


def _decode(path: Path, raw: bytes, inner: str = "") -> str:
    name = str(path)
    within = "the data inside the gzip file" if inner else "the file"
    if not raw.strip():
        raise refuse(name, f"{'the file' if not inner else within} is empty; expected records in Alpaca, ShareGPT, "
                           f"OpenAI JSONL or CSV format")
    if inner:
        kind = binary_kind(raw[:HEAD_BYTES], raw)
        if kind:
            what, todo = kind
            todo = "decompress it (gunzip) and import the .parquet file" if what == "a Parquet file" else todo
            raise refuse(name, f"a gzip file holding {what}, not JSON/JSONL/CSV text{'; ' + todo if todo else ''}")
    try:
        return raw.decode("utf-8-sig")  # a UTF-8 byte-order mark is accepted and dropped
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        where = f"line {line}"
        if inner:
            raise refuse(name, f"{within} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start} of the "
                               f"decompressed data); tuitune reads gzip-compressed JSON, JSONL or CSV",
                         where=where) from None
        raise FormatError([Issue(name, where, "", f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset "
                                                  f"{e.start}); save the file as UTF-8 and retry")]) from None


# ---- columnar files -------------------------------------------------------------------------------------

def parquet_part(path: Path, f) -> TablePart:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(f)
        columns = list(pf.schema_arrow.names)
    except (pa.ArrowException, OSError) as e:
        f.close()
        raise refuse(path, f"not a complete Parquet file ({e}); it is truncated or damaged: copy or download it "
                           f"again") from None

    def batches() -> Iterator[list[dict]]:
        done = 0
        try:
            for batch in pf.iter_batches(batch_size=BATCH_ROWS):
                rows = batch.to_pylist()
                done += len(rows)
                yield rows
        except (pa.ArrowException, OSError) as e:
            raise refuse(path, f"the Parquet data is damaged after {done} records ({e}); copy or download the file "
                               f"again", where=f"record [{done}]") from None
        finally:
            f.close()

    return TablePart(str(path), columns, batches, "parquet")


def arrow_part(path: Path, max_bytes: int) -> TablePart:
    """One Arrow shard of a save_to_disk folder (IPC stream, as datasets writes it; an IPC file also reads)."""
    import pyarrow as pa
    from pyarrow import ipc

    f = open_regular(path, max_bytes)

    def reader():
        try:
            return ipc.open_stream(f)
        except pa.ArrowInvalid:
            f.seek(0)
            return ipc.open_file(f)

    try:
        columns = list(reader().schema.names)
    except (pa.ArrowException, OSError) as e:
        f.close()
        raise refuse(path, f"not a readable Arrow file ({e}); the save_to_disk folder is damaged: save or copy it "
                           f"again") from None

    def batches() -> Iterator[list[dict]]:
        done = 0
        try:
            f.seek(0)
            r = reader()
            for batch in ((r.get_batch(i) for i in range(r.num_record_batches))
                          if isinstance(r, ipc.RecordBatchFileReader) else r):
                rows = batch.to_pylist()
                done += len(rows)
                yield rows
        except (pa.ArrowException, OSError) as e:
            raise refuse(path, f"the Arrow data is damaged after {done} records ({e}); save or copy the folder again",
                         where=f"record [{done}]") from None
        finally:
            f.close()

    return TablePart(str(path), columns, batches, "arrow")


def save_to_disk_parts(folder: Path, max_bytes: int) -> Iterator[TablePart]:
    """The Arrow shards of a `datasets` save_to_disk folder (a Dataset; a DatasetDict with one split)."""
    dict_json = folder / "dataset_dict.json"
    if dict_json.is_file():
        splits = _json_file(dict_json).get("splits") or []
        if len(splits) != 1:
            raise refuse(folder, f"a datasets DatasetDict with the splits {', '.join(map(str, splits)) or '(none)'}; "
                                 f"import one split's folder, e.g. {folder / str(splits[0]) if splits else folder}")
        folder = folder / str(splits[0])
    state_json = folder / "state.json"
    if not state_json.is_file():
        raise refuse(folder, f"not a regular file (a folder) and not a datasets save_to_disk folder (no state.json); "
                             f"import a file from it, or the folder Dataset.save_to_disk wrote. tuitune reads {READS}")
    names = [d.get("filename") for d in _json_file(state_json).get("_data_files") or [] if isinstance(d, dict)]
    if not names or not all(isinstance(n, str) for n in names):
        raise refuse(state_json, "lists no data files (_data_files); the save_to_disk folder is damaged: save it "
                                 "again")
    files = [folder / n for n in names]
    missing = [p for p in files if not p.is_file()]
    if missing:
        raise refuse(missing[0], f"missing: state.json lists {len(files)} Arrow data file(s) and {len(missing)} "
                                 f"of them are not in the folder; the save_to_disk folder is incomplete: copy it "
                                 f"again in full")
    total = sum(p.stat().st_size for p in files)
    if total > max_bytes:
        raise refuse(folder, too_big(total, max_bytes), remedy="max_bytes")
    for p in files:
        yield arrow_part(p, max_bytes)


def _json_file(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise refuse(path, f"not readable JSON ({e}); the save_to_disk folder is damaged: save it again") from None
    if not isinstance(data, dict):
        raise refuse(path, "expected a JSON object; the save_to_disk folder is damaged: save it again")
    return data


# ---- hf://datasets/ORG/NAME[:SPLIT] from the Hugging Face cache ---------------------------------------------

def hub_cache() -> Path:
    """huggingface_hub's cache folder, from the environment at call time (HF_HUB_CACHE, HF_HOME)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def parse_hub_id(spec: str) -> tuple[str, str | None, str | None]:
    """(ORG/NAME, revision or None, split or None) of hf://datasets/ORG/NAME[@REVISION][:SPLIT]."""
    rest = spec[len(HF_PREFIX):]
    usage = "expected hf://datasets/ORG/NAME or hf://datasets/ORG/NAME:SPLIT (a dataset in the Hugging Face cache)"
    if not rest.startswith("datasets/"):
        raise refuse(spec, usage)
    repo, _, split = rest[len("datasets/"):].partition(":")
    repo, _, revision = repo.partition("@")
    org, _, name = repo.partition("/")
    if not org or not name or "/" in name:
        raise refuse(spec, usage)
    return repo, revision or None, split or None


def hub_dataset_parts(spec: str, max_bytes: int) -> Iterator[Part]:
    repo, revision, split = parse_hub_id(spec)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = hub_cache()
    try:
        snap = Path(snapshot_download(repo, repo_type="dataset", revision=revision, cache_dir=str(cache),
                                      local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
        raise refuse(spec, f"the dataset {repo}{'@' + revision if revision else ''} is not in the Hugging Face cache "
                           f"({cache}); tuitune reads hf:// datasets from the cache only, it does not download. On "
                           f"a machine with network: `hf download --repo-type dataset {repo}` and copy the cache "
                           f"folder here (or set HF_HUB_CACHE to it), or download the dataset's files and import "
                           f"them") from None
    from datasets.data_files import DataFilesDict, EmptyDatasetError, get_data_patterns

    try:
        files = DataFilesDict.from_patterns(get_data_patterns(str(snap)), base_path=str(snap))
    except (EmptyDatasetError, FileNotFoundError):
        raise refuse(spec, f"the cached dataset ({snap}) holds no data files in a layout tuitune knows (such as "
                           f"data/train-00000-of-00001.parquet or train.jsonl)") from None
    splits = list(files)
    if split is None:
        if "train" not in files and len(splits) != 1:
            raise refuse(spec, f"the cached dataset has the splits {', '.join(splits)}; name one, e.g. "
                               f"{HF_PREFIX}datasets/{repo}:{splits[0]}")
        split = "train" if "train" in files else splits[0]
    if split not in files:
        raise refuse(spec, f"no split {split!r} in the cached dataset {repo}; its splits: {', '.join(splits)}")
    for f in files[split]:
        yield file_part(Path(f), max_bytes)
