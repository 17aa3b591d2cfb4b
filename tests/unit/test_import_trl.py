"""TRL's prompt/completion format (plain and conversational), OpenAI messages with tool calls (refused by
line and field: a sample cannot hold them, and dropping them would train on a conversation with a hole),
and the --map column mapping; broken variants name file, record and field and store nothing."""

from __future__ import annotations

import json

import pytest
from import_cli import cli, refused

from tuitune.core.data.formats import FormatError, read_file
from tuitune.core.data.store import Store


def jsonl(tmp_path, name, rows):
    p = tmp_path / name
    p.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return p



def test_prompt_completion_plain_and_conversational(tmp_path, project):
    p = jsonl(tmp_path, "pc.jsonl", [
        {"prompt": "Translate: pod", "completion": "容器组"},
        {"prompt": [{"role": "system", "content": "You translate."}, {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Translate: node"}],
         "completion": [{"role": "assistant", "content": "节点"}]}])
    res = cli(project, p)
    assert res.exit_code == 0, res.output
    assert "(trl prompt-completion)" in res.stdout
    with Store.open(project) as st:
        a, b = st.samples()
    assert (a.instruction, a.output, a.system, a.history) == ("Translate: pod", "容器组", "", [])
    assert (b.instruction, b.output, b.system, b.history) == ("Translate: node", "节点", "You translate.",
                                                              [("Hi", "Hello")])
    assert b.to_messages()[-1] == {"role": "assistant", "content": "节点"}


def test_prompt_completion_broken(tmp_path, project):
    p = jsonl(tmp_path, "bad.jsonl", [
        {"prompt": "q", "completion": "a"},
        {"prompt": "q", "completion": 42},
        {"prompt": "q"},
        {"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "a"},
                                                                     {"role": "user", "content": "more?"}]},
        {"prompt": "q", "completion": "a", "label": True}])
    err = refused(project, p)
    assert f"{p}:line 2: completion: expected a string or an assistant message, got a number" in err
    assert f"{p}:line 3: completion: missing" in err
    assert f"{p}:line 4: completion: expected exactly one assistant message, got a list of 2" in err
    assert f"{p}:line 5: label: an unpaired preference record" in err
    assert "4 of 5 records have problems; nothing was imported" in err


def test_tool_calls_are_refused_naming_line_and_field(tmp_path, project):
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}
    p = jsonl(tmp_path, "tools.jsonl", [
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
        {"messages": [{"role": "user", "content": "Weather in Paris?"},
                      {"role": "assistant", "content": None, "tool_calls": [call]},
                      {"role": "tool", "tool_call_id": "call_1", "content": "18°C"},
                      {"role": "assistant", "content": "18°C in Paris."}]},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
         "tools": [{"type": "function", "function": {"name": "get_weather"}}]}])
    err = refused(project, p)
    assert f"{p}:line 2: messages[1].tool_calls: tool calls cannot be imported" in err
    assert f"{p}:line 2: messages[2].role: a 'tool' message (tool use) cannot be imported" in err
    assert f"{p}:line 3: tools: tool definitions cannot be imported" in err
    assert "line 1" not in err
    sg = tmp_path / "sg.json"
    sg.write_text(json.dumps([{"conversations": [{"from": "human", "value": "q"},
                                                 {"from": "function_call", "value": "{}"},
                                                 {"from": "observation", "value": "{}"},
                                                 {"from": "gpt", "value": "a"}]}]))
    err = refused(project, sg)
    assert f"{sg}:record [0]: conversations[1].from: a 'function_call' message (tool use) cannot be imported" in err


def test_an_answer_marked_not_to_train_on_is_refused(tmp_path, project):
    p = jsonl(tmp_path, "w.jsonl", [{"messages": [{"role": "user", "content": "q"},
                                                  {"role": "assistant", "content": "draft", "weight": 0},
                                                  {"role": "user", "content": "again"},
                                                  {"role": "assistant", "content": "final", "weight": 1}]}])
    refused(project, p, words=[f"{p}:line 1: messages[1].weight: 0 (do not train on this answer) cannot be kept"])


def test_map_renames_columns(tmp_path, project):
    p = jsonl(tmp_path, "qa.jsonl", [{"question": "What is a pod?", "answer": "The smallest unit.", "id": 1},
                                    {"question": "What is a node?", "answer": "A machine.", "id": 2}])
    res = cli(project, p, "--map", "instruction=question,output=answer")
    assert res.exit_code == 0, res.output
    with Store.open(project) as st:
        assert [(s.instruction, s.output) for s in st.samples()] == [("What is a pod?", "The smallest unit."),
                                                                     ("What is a node?", "A machine.")]


def test_map_on_parquet_and_csv(tmp_path, store):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"q": "a?", "a": "b", "ctx": "c"}]), tmp_path / "m.parquet")
    (s,) = read_file(tmp_path / "m.parquet", columns="instruction=q,output=a,input=ctx").samples
    assert (s.instruction, s.input, s.output) == ("a?", "c", "b")
    (tmp_path / "m.csv").write_text("question,answer\nq1,a1\n", encoding="utf-8")
    (s,) = read_file(tmp_path / "m.csv", columns=["instruction=question", "output=answer"]).samples
    assert (s.instruction, s.output) == ("q1", "a1")


def test_map_errors(tmp_path, project):
    p = jsonl(tmp_path, "qa.jsonl", [{"question": "q", "answer": "a"}, {"question": "q2", "reply": "a2"}])
    err = refused(project, p, "--map", "instruction=question,output=answer")
    assert f"{p}:line 2: answer: missing; the column mapping reads output from this column" in err
    refused(project, p, "--map", "instrucion=question", words=["unknown field 'instrucion'", "instruction, input"])
    refused(project, p, "--map", "instruction", words=["expected FIELD=COLUMN"])
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"question": "q", "answer": "a"}]), tmp_path / "m.parquet")
    refused(project, tmp_path / "m.parquet", "--map", "instruction=question,output=reply",
            words=[f"{tmp_path / 'm.parquet'}: reply: no such column in the file", "question, answer"])
    (tmp_path / "m.csv").write_text("question,answer\nq,a\n", encoding="utf-8")
    refused(project, tmp_path / "m.csv", "--map", "instruction=question,output=reply",
            words=[f"{tmp_path / 'm.csv'}:line 1: reply: no such column"])


def test_unmapped_columns_suggest_the_map(tmp_path, project):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "qa.parquet"
    pq.write_table(pa.Table.from_pylist([{"question": "q", "answer": "a"}]), p)
    refused(project, p, words=[f"{p}: cannot tell the format from the columns question, answer", "--map"])


@pytest.mark.parametrize("fmt", ["trl", "auto"])
def test_forced_trl_format(tmp_path, fmt):
    p = jsonl(tmp_path, "x.jsonl", [{"prompt": "q", "completion": "a"}])
    assert read_file(p, fmt).format == "trl prompt-completion"
    with pytest.raises(FormatError, match="completion: missing"):
        read_file(jsonl(tmp_path, "y.jsonl", [{"prompt": "q", "answer": "a"}]), fmt)
