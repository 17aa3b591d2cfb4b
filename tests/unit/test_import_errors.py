"""Every importer names file, record and field on broken input, lists all problems, and imports nothing."""

from __future__ import annotations

import json

import pytest

from tuitune.core.data.formats import FormatError, read_file
from tuitune.core.data.store import Store


def write(tmp_path, name, content: str | bytes):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return p


def issues_of(path, **kw) -> list[str]:
    with pytest.raises(FormatError) as exc:
        read_file(path, **kw)
    return [str(i) for i in exc.value.issues]


def test_bad_json_names_line_and_column(tmp_path):
    p = write(tmp_path, "bad.json", '[\n {"instruction": "a", "output": "b"},\n {"instruction": "c" "output": "d"}\n]')
    (msg,) = issues_of(p)
    assert msg.startswith(f"{p}:line 3: invalid JSON at column")


def test_jsonl_reports_every_bad_line(tmp_path):
    lines = ['{"instruction": "ok", "output": "fine"}', "{not json", '{"instruction": "x"}',
             '{"instruction": 5, "output": "y"}', '["a list"]']
    p = write(tmp_path, "d.jsonl", "\n".join(lines))
    msgs = issues_of(p)
    assert f"{p}:line 2: invalid JSON at column 2: Expecting property name enclosed in double quotes" in msgs
    assert f"{p}:line 3: output: missing; expected a non-empty string" in msgs
    assert f"{p}:line 4: instruction: expected a string, got a number" in msgs
    assert f"{p}:line 5: expected an object, got a list" in msgs
    assert len(msgs) == 4


def test_json_array_names_the_index_and_field(tmp_path):
    recs = [{"instruction": "a", "output": "b"}, {"instruction": "  ", "output": "b"},
            {"instruction": "a", "output": "b", "history": [["q"]]},
            {"instruction": "a", "output": "b", "history": "q a"}, {"instruction": "a", "output": ["x"]}]
    p = write(tmp_path, "d.json", json.dumps(recs))
    msgs = issues_of(p)
    assert msgs == [
        f"{p}:record [1]: instruction: is empty; expected a non-empty string",
        f"{p}:record [2]: history[0]: expected a pair [user, assistant] of two strings",
        f"{p}:record [3]: history: expected a list of [user, assistant] pairs, got a string",
        f"{p}:record [4]: output: expected a string, got a list",
    ]


def test_error_message_says_what_to_do(tmp_path):
    p = write(tmp_path, "d.json", json.dumps([{"instruction": "a"}, {"instruction": "b", "output": "c"}]))
    with pytest.raises(FormatError) as exc:
        read_file(p)
    assert "1 of 2 records have problems; nothing was imported" in str(exc.value)
    assert exc.value.remedy == "skip_invalid" and "--" not in str(exc.value)  # core names no CLI flag


def test_skip_invalid_keeps_the_valid_ones_and_counts(tmp_path):
    p = write(tmp_path, "d.json", json.dumps([{"instruction": "a"}, {"instruction": "b", "output": "c"}]))
    parsed = read_file(p, skip_invalid=True)
    assert [s.instruction for s in parsed.samples] == ["b"]
    assert parsed.skipped_records == 1 and "output" in str(parsed.issues[0])


def test_issue_list_is_capped_but_counts_all(tmp_path):
    p = write(tmp_path, "d.jsonl", "\n".join('{"instruction": "a"}' for _ in range(120)))
    with pytest.raises(FormatError) as exc:
        read_file(p)
    assert exc.value.total == 120
    assert "... and 70 more problems" in str(exc.value)


def test_empty_file(tmp_path):
    p = write(tmp_path, "empty.json", b"")
    assert issues_of(p) == [f"{p}: the file is empty; expected records in Alpaca, ShareGPT, OpenAI JSONL or CSV format"]


def test_bom_is_accepted(tmp_path):
    p = write(tmp_path, "bom.json", b"\xef\xbb\xbf" + json.dumps([{"instruction": "a", "output": "b"}]).encode())
    assert [s.output for s in read_file(p).samples] == ["b"]


def test_invalid_utf8_names_line_and_byte(tmp_path):
    p = write(tmp_path, "latin1.jsonl", b'{"instruction": "a", "output": "b"}\n{"instruction": "caf\xe9", "output": "x"}\n')
    (msg,) = issues_of(p)
    assert msg.startswith(f"{p}:line 2: not valid UTF-8 (byte 0xe9 at offset")
    assert "save the file as UTF-8" in msg


def test_sharegpt_errors(tmp_path):
    recs = [{"conversations": [{"from": "gpt", "value": "a"}]},
            {"conversations": [{"from": "human", "value": "q"}, {"from": "bot", "value": "a"}]},
            {"conversations": [{"from": "human", "value": "q"}]},
            {"conversations": []}]
    p = write(tmp_path, "sg.json", json.dumps(recs))
    msgs = issues_of(p, fmt="sharegpt")
    assert f"{p}:record [0]: conversations[0].from: expected a user turn here (turns must alternate user, " \
           f"assistant, starting with user), got assistant" in msgs
    assert f"{p}:record [1]: conversations[1].from: expected one of human/gpt/system (or user/assistant), got 'bot'" in msgs
    assert f"{p}:record [2]: conversations: expected user/assistant pairs ending with an assistant answer" in msgs
    assert f"{p}:record [3]: conversations: expected a non-empty list of messages, got a list" in msgs


def test_openai_errors(tmp_path):
    p = write(tmp_path, "oa.jsonl", '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": 3}]}\n')
    assert issues_of(p) == [f"{p}:line 1: messages[1].content: expected a string, got a number"]


def test_csv_errors_and_import(tmp_path):
    p = write(tmp_path, "d.csv", "instruction,input,output\nTranslate,pod,容器组\n,x,y\nHello,,\n")
    msgs = issues_of(p)
    assert msgs == [f"{p}:line 3: instruction: is empty; expected a non-empty string",
                    f"{p}:line 4: output: is empty; expected a non-empty string"]
    missing = write(tmp_path, "m.csv", "question,answer\nq,a\n")
    assert "missing column(s) instruction, output" in issues_of(missing)[0]
    ok = write(tmp_path, "ok.csv", '\ufeffinstruction,output\n"multi\nline",b\n')
    (s,) = read_file(ok).samples
    assert (s.instruction, s.output) == ("multi\nline", "b")


def test_unknown_record_shape(tmp_path):
    p = write(tmp_path, "x.jsonl", '{"question": "q", "answer": "a"}\n')
    assert "cannot tell the format" in issues_of(p)[0]


def test_cli_exit_code_and_nothing_written(tmp_path):
    import subprocess
    import sys

    proj = tmp_path / "proj"
    good = write(tmp_path, "good.json", json.dumps([{"instruction": "a", "output": "b"}]))
    bad = write(tmp_path, "bad.json", json.dumps([{"instruction": "a", "output": "b"}, {"instruction": "c"}]))
    cmd = [sys.executable, "-m", "tuitune.cli", "--project", str(proj)]
    assert subprocess.run([*cmd, "import", str(good)], capture_output=True, check=False).returncode == 0
    res = subprocess.run([*cmd, "import", str(bad)], capture_output=True, text=True, check=False)
    assert res.returncode == 2
    assert f"{bad}:record [1]: output: missing" in res.stderr
    assert "--skip-invalid" in res.stderr  # the CLI says how to get past it in its own words
    with Store.open(proj) as st:
        assert st.count() == 1
    res = subprocess.run([*cmd, "import", str(bad), "--skip-invalid"], capture_output=True, text=True, check=False)
    assert res.returncode == 0 and "Skipped 1 invalid records" in res.stderr
    with Store.open(proj) as st:
        assert st.count() == 2
