"""What a binary file is, from its first bytes (magic numbers), so that a file tuitune does not read is named
("an Excel workbook", "a PNG image") instead of failing as text that is "not valid UTF-8"."""

from __future__ import annotations

import io
import zipfile

# (offset, magic, what it is, what to do). Checked in order; the first match wins.
_MAGIC: tuple[tuple[int, bytes, str, str], ...] = (
    (0, b"PAR1", "a Parquet file", ""),
    (0, b"\x1f\x8b", "a gzip file", ""),
    (0, b"ARROW1", "an Arrow IPC (Feather) file", ("export it as Parquet or JSONL, or import the datasets "
                                                   "save_to_disk folder it came from")),
    (0, b"\xff\xff\xff\xff", "an Arrow IPC stream (a shard of a datasets save_to_disk folder)",
     "import the save_to_disk folder that holds it (the folder with state.json)"),
    (0, b"\x89PNG\r\n\x1a\n", "a PNG image", ""),
    (0, b"\xff\xd8\xff", "a JPEG image", ""),
    (0, b"GIF87a", "a GIF image", ""),
    (0, b"GIF89a", "a GIF image", ""),
    (0, b"%PDF", "a PDF document", "copy its text into a JSON or CSV file"),
    (0, b"SQLite format 3\x00", "an SQLite database", "export the table as CSV or JSONL"),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Microsoft Office file (.xls/.doc)",
     "save the sheet as CSV (UTF-8)"),
    (0, b"BZh", "a bzip2 file", "decompress it (bunzip2), or recompress it with gzip"),
    (0, b"\xfd7zXZ\x00", "an xz file", "decompress it (unxz), or recompress it with gzip"),
    (0, b"\x28\xb5\x2f\xfd", "a Zstandard file", "decompress it (unzstd), or recompress it with gzip"),
    (0, b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive", "extract it and import the file inside"),
    (0, b"\x7fELF", "a program (ELF executable)", ""),
    (0, b"\x93NUMPY", "a NumPy array file", ""),
    (0, b"GGUF", "a GGUF model file", ""),
    (0, b"Obj\x01", "an Avro file", "convert it to Parquet or JSONL"),
    (0, b"ORC", "an ORC file", "convert it to Parquet or JSONL"),
    (0, b"\x89HDF\r\n\x1a\n", "an HDF5 file", ""),
    (0, b"\x80\x04\x95", "a Python pickle", ""),
    (0, b"\x80\x05\x95", "a Python pickle", ""),
    (257, b"ustar", "a tar archive", "extract it and import the file inside"),
)
HEAD_BYTES = 512  # enough for every magic above (tar's is at offset 257)


def binary_kind(head: bytes, data: bytes | None = None, path=None) -> tuple[str, str] | None:
    """(what it is, what to do) for a known binary file, from its first bytes; None for anything else (text,
    or a binary of no known kind). A zip is looked into (`data`: its bytes, or `path`) to tell a workbook."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_kind(data, path)
    for offset, magic, what, todo in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return what, todo
    if len(head) > 10 and head[8:10] == b'{"' and int.from_bytes(head[:8], "little") < 100_000_000:
        return "a safetensors file (model weights)", ""
    return None


def _zip_kind(data: bytes | None, path) -> tuple[str, str]:
    try:
        with zipfile.ZipFile(io.BytesIO(data) if data is not None else path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return "a zip archive (damaged)", "extract it and import the file inside"
    if any(n.startswith("xl/") for n in names):
        return "an Excel workbook (.xlsx)", "save the sheet as CSV (UTF-8) and import that"
    if any(n.startswith("word/") for n in names):
        return "a Word document (.docx)", "copy its examples into a JSON or CSV file"
    if "mimetype" in names or any(n.startswith("ppt/") for n in names):
        return "an office document (a zip container)", "save it as CSV (UTF-8) and import that"
    return "a zip archive", "extract it and import the file inside"
