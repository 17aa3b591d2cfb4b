"""Import from where data lives: Parquet (written by pyarrow, read in batches), gzip-compressed JSON/JSONL, a
datasets save_to_disk folder, hf://datasets/ORG/NAME from a Hugging Face hub-cache layout; and the broken
variants of each: a clear error naming file, record and field, exit 2 via the CLI, nothing stored. Binary
files of kinds tuitune does not read are named by what they are."""

from __future__ import annotations

import gzip
import json
import zipfile

import pytest
from import_cli import cli, refused

from tuitune.core.data import sources
from tuitune.core.data.formats import FormatError, read_file
from tuitune.core.data.importing import import_file
from tuitune.core.data.store import Store

RECORDS = [{"instruction": "Translate: pod", "input": "", "output": "容器组", "system": "You translate."},
           {"instruction": "Translate: node", "input": "", "output": "节点", "system": ""},
           {"instruction": "Summarise", "input": "A long text.", "output": "Short.", "system": ""}]



def write_parquet(path, rows, **kw):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path, **kw)
    return path


# ---- Parquet -------------------------------------------------------------------------------------------

def test_parquet_imports_with_system_and_history(tmp_path, project):
    rows = [dict(r, history=[["hi", "hello"]] if i == 0 else []) for i, r in enumerate(RECORDS)]
    p = write_parquet(tmp_path / "train-00000-of-00001.parquet", rows)
    res = cli(project, p)
    assert res.exit_code == 0, res.output
    assert "Imported 3 records" in res.stdout and "(parquet, alpaca)" in res.stdout
    with Store.open(project) as st:
        got = st.samples()
    assert [(s.instruction, s.output, s.system) for s in got] == [(r["instruction"], r["output"], r["system"])
                                                                 for r in RECORDS]
    assert got[0].history == [("hi", "hello")]


def test_parquet_is_recognised_by_content_and_read_in_batches(tmp_path, store, monkeypatch):
    monkeypatch.setattr(sources, "BATCH_ROWS", 2)
    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(7)]
    p = write_parquet(tmp_path / "data.jsonl", rows, row_group_size=3)  # misnamed: the content decides
    seen = []
    real = sources.parquet_part

    def spy(path, f):
        part = real(path, f)
        inner = part.batches
        part.batches = lambda: (seen.append(len(b)) or b for b in inner())
        return part

    monkeypatch.setattr(sources, "parquet_part", spy)
    rep = import_file(store, p)
    assert rep.stored == 7 and rep.parsed.container == "parquet"
    assert max(seen) <= 2 and sum(seen) == 7  # never the whole file at once
    assert [s.output for s in store.samples()] == [f"a{i}" for i in range(7)]


def test_large_parquet_goes_through_the_staged_import(tmp_path, store):
    from tuitune.core.data import staging

    n = staging.STAGE_ABOVE + 10
    p = write_parquet(tmp_path / "big.parquet", [{"instruction": f"q{i}", "output": "a"} for i in range(n)])
    progress = []
    rep = import_file(store, p, on_progress=progress.append)
    assert rep.stored == n and store.count() == n
    assert progress and progress[-1] == n  # staged in chunks, published at once
    assert store.conn.execute("SELECT status FROM imports").fetchall() == [("published",)]


def test_truncated_parquet(tmp_path, project):
    p = write_parquet(tmp_path / "t.parquet", RECORDS)
    p.write_bytes(p.read_bytes()[:-40])
    refused(project, p, words=[str(p), "not a complete Parquet file", "truncated or damaged"])


def test_parquet_missing_a_needed_column(tmp_path, project):
    p = write_parquet(tmp_path / "m.parquet", [{"instruction": "q", "input": "x"}])
    err = refused(project, p, words=[f"{p}: output: no such column", "instruction, input", "--map"])
    assert err.count("no such column") == 1  # one problem for the file, not one per row


def test_parquet_null_value_names_the_record(tmp_path, project):
    p = write_parquet(tmp_path / "n.parquet", [{"instruction": "q", "output": "a"}, {"instruction": "q2",
                                                                                    "output": None}])
    refused(project, p, words=[f"{p}:record [1]: output: missing", "1 of 2 records"])


# ---- gzip ------------------------------------------------------------------------------------------------

def test_jsonl_gz_and_json_gz(tmp_path, store):
    a = tmp_path / "d.jsonl.gz"
    a.write_bytes(gzip.compress("\n".join(json.dumps(r, ensure_ascii=False) for r in RECORDS).encode()))
    b = tmp_path / "d.json.gz"
    b.write_bytes(gzip.compress(json.dumps(RECORDS[:2], ensure_ascii=False).encode()))
    assert import_file(store, a).stored == 3
    rep = import_file(store, b)
    assert rep.stored == 2 and rep.parsed.container == "gzip" and rep.already_in_project == 2
    assert [s.output for s in store.samples()][:3] == ["容器组", "节点", "Short."]


def test_gzip_errors_name_the_line_inside(tmp_path):
    p = tmp_path / "d.jsonl.gz"
    p.write_bytes(gzip.compress(b'{"instruction": "q", "output": "a"}\n{"instruction": "q"}\n'))
    with pytest.raises(FormatError) as exc:
        read_file(p)
    assert [str(i) for i in exc.value.issues] == [f"{p}:line 2: output: missing; expected a non-empty string"]


def test_corrupt_gzip(tmp_path, project):
    p = tmp_path / "c.jsonl.gz"
    data = gzip.compress(json.dumps(RECORDS[0]).encode() * 50)
    p.write_bytes(data[: len(data) // 2])  # truncated
    refused(project, p, words=[str(p), "gzip data is corrupt or truncated"])
    q = tmp_path / "flipped.json.gz"
    q.write_bytes(data[:12] + bytes(b ^ 0xFF for b in data[12:40]) + data[40:])
    refused(project, q, words=[str(q), "gzip data is corrupt or truncated"])


def test_gzip_of_a_binary(tmp_path, project):
    png = tmp_path / "img.json.gz"
    png.write_bytes(gzip.compress(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4))
    refused(project, png, words=[str(png), "a gzip file holding a PNG image"])
    raw = tmp_path / "noise.jsonl.gz"
    raw.write_bytes(gzip.compress(bytes([0x80, 0xfe, 0x00, 0xc3]) * 100))
    refused(project, raw, words=[str(raw), "not UTF-8 text", "gzip-compressed JSON"])


def test_gzip_bomb_stops_at_the_limit(tmp_path):
    p = tmp_path / "bomb.jsonl.gz"
    p.write_bytes(gzip.compress(b" " * 5_000_000))
    with pytest.raises(FormatError, match="decompressed, the data is larger than the import limit") as exc:
        read_file(p, max_bytes=1_000_000)
    assert exc.value.remedy == "max_bytes"


# ---- save_to_disk ----------------------------------------------------------------------------------------

def test_save_to_disk_folder(tmp_path, project):
    import datasets

    folder = tmp_path / "ds"
    datasets.Dataset.from_list(RECORDS).save_to_disk(str(folder))
    res = cli(project, folder)
    assert res.exit_code == 0, res.output
    assert "Imported 3 records" in res.stdout and "(arrow, alpaca)" in res.stdout
    with Store.open(project) as st:
        assert [s.system for s in st.samples()] == ["You translate.", "", ""]


def test_save_to_disk_dataset_dict(tmp_path, store):
    import datasets

    ds = datasets.Dataset.from_list(RECORDS)
    one, two = tmp_path / "one", tmp_path / "two"
    datasets.DatasetDict({"train": ds}).save_to_disk(str(one))
    datasets.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(str(two))
    assert import_file(store, one).stored == 3  # a single split is taken as it is
    with pytest.raises(FormatError, match="splits train, test; import one split's folder") as exc:
        import_file(store, two)
    assert str(two) in str(exc.value) and store.count() == 3
    assert import_file(store, two / "test").stored == 1


def test_save_to_disk_without_its_arrow_files(tmp_path, project):
    import datasets

    folder = tmp_path / "ds"
    datasets.Dataset.from_list(RECORDS).save_to_disk(str(folder), num_shards=2)
    arrow = sorted(folder.glob("*.arrow"))
    arrow[1].unlink()
    refused(project, folder, words=[str(arrow[1]), "missing", "incomplete"])
    for a in folder.glob("*.arrow"):
        a.unlink()
    (folder / "state.json").unlink()
    refused(project, folder, words=[str(folder), "not a datasets save_to_disk folder"])


def test_arrow_shard_with_broken_records(tmp_path, project):
    import datasets

    folder = tmp_path / "ds"
    datasets.Dataset.from_list([{"instruction": "q", "output": "a"}, {"instruction": "q", "output": ""}]) \
        .save_to_disk(str(folder))
    (shard,) = folder.glob("*.arrow")
    refused(project, folder, words=[f"{shard}:record [1]: output: is empty"])


# ---- hf://datasets/ORG/NAME from the hub cache -----------------------------------------------------------

@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """huggingface_hub's cache layout (blobs, refs/main, snapshots/<commit>/ symlinks) holding a dataset
    repository with a train and a test split as Parquet."""
    cache = tmp_path / "hf" / "hub"
    repo = cache / "datasets--acme--k8s-zh"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = repo / "snapshots" / commit / "data"
    for d in (repo / "blobs", repo / "refs", snap):
        d.mkdir(parents=True)
    for split, rows in (("train", RECORDS), ("test", RECORDS[:1])):
        blob = repo / "blobs" / f"{split}blob"
        write_parquet(blob, rows)
        (snap / f"{split}-00000-of-00001.parquet").symlink_to(f"../../../blobs/{split}blob")
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_hf_dataset_from_the_cache(hub_cache, project):
    res = cli(project, "hf://datasets/acme/k8s-zh")
    assert res.exit_code == 0, res.output
    assert "Imported 3 records from hf://datasets/acme/k8s-zh (parquet, alpaca)" in res.stdout
    res = cli(project, "hf://datasets/acme/k8s-zh:test")
    assert res.exit_code == 0 and "Imported 1 record" in res.stdout
    with Store.open(project) as st:
        assert st.count() == 4


def test_hf_dataset_not_cached_or_unknown_split(hub_cache, project):
    refused(project, "hf://datasets/acme/other", words=["hf://datasets/acme/other", "not in the Hugging Face cache",
                                                         str(hub_cache), "does not download"])
    refused(project, "hf://datasets/acme/k8s-zh:validation", words=["no split 'validation'", "train, test"])
    refused(project, "hf://models/acme/k8s-zh", words=["expected hf://datasets/ORG/NAME"])


def test_hf_dataset_with_a_broken_record(hub_cache, project):
    snap = next((hub_cache / "datasets--acme--k8s-zh" / "snapshots").iterdir()) / "data"
    bad = snap / "train-00000-of-00001.parquet"
    bad.unlink()
    write_parquet(bad, [{"instruction": "q", "output": 3}])
    refused(project, "hf://datasets/acme/k8s-zh", words=[f"{bad}:record [0]: output: expected a string, got a number"])


# ---- binaries tuitune does not read ----------------------------------------------------------------------

def test_binary_files_say_what_they_are(tmp_path, project):
    import pyarrow as pa
    from pyarrow import feather

    xlsx = tmp_path / "data.xlsx"
    with zipfile.ZipFile(xlsx, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", "<workbook/>")
    zipped = tmp_path / "data.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("data.jsonl", json.dumps(RECORDS[0]))
    arrow = tmp_path / "data.json"  # the name says JSON; the content is Arrow
    feather.write_feather(pa.Table.from_pylist(RECORDS), str(arrow), compression="uncompressed")
    png = tmp_path / "data.jsonl"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    for path, what in ((xlsx, "an Excel workbook (.xlsx)"), (zipped, "a zip archive"),
                       (arrow, "an Arrow IPC (Feather) file"), (png, "a PNG image")):
        err = refused(project, path, words=[str(path), what, "which tuitune does not import", "Parquet"])
        assert "UTF-8" not in err.replace("CSV (UTF-8)", "")
