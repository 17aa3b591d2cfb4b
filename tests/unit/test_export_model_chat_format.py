"""The Ollama TEMPLATE derived from a model's chat template: real templates (the embedded SmolLM2's ChatML, and the
Llama 3 / Gemma / Qwen / Phi-3 templates TRL ships as data), each rendered by the generated Go template (through
a small interpreter of the Go-template subset the generator writes) and compared with the Jinja rendering."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tuitune.core.export_model.chat_format import (
    UnknownChatFormat,
    derive,
    go_template,
    jinja_render,
    render_messages,
)
from tuitune.core.export_model.modelfile import Modelfile, ollama_name


def trl_template(name: str) -> str:
    import trl

    return (Path(trl.__file__).parent / "chat_templates" / f"{name}.jinja").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def smollm2_template(embedded_model) -> str:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model).chat_template


CONVERSATIONS = [
    [{"role": "user", "content": "Translate: Pods are the smallest deployable units."}],
    [{"role": "system", "content": "You translate Kubernetes docs into Chinese."},
     {"role": "user", "content": "Translate: A Service exposes an application."}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "近期运气如何？"},
     {"role": "assistant", "content": "整体平稳。"}, {"role": "user", "content": "工作呢？"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke."}],
]


# ---- a tiny interpreter of the Go text/template subset go_template() writes -----------------------------

_ACTION = re.compile(r'\{\{((?:"(?:\\.|[^"\\])*"|.)*?)\}\}', re.DOTALL)  # "}}" inside a string literal is text


def go_render(template: str, messages: list[dict]) -> str:
    """Render the subset: if/else if/else/end, range $i, $m := .Messages, variables ($x := / $x =), string
    literals, $m.Role / $m.Content, eq, not, and, index .Messages 0."""
    tokens, pos = [], 0
    for m in _ACTION.finditer(template):
        tokens.append(("text", template[pos:m.start()]))
        tokens.append(("action", m.group(1).strip()))
        pos = m.end()
    tokens.append(("text", template[pos:]))
    tree, rest = _parse(tokens, 0)
    assert rest == len(tokens), "unbalanced template"
    env = {".Messages": messages}
    out: list[str] = []
    _exec(tree, env, out)
    return "".join(out)


def _parse(tokens, i, stop=("end",)):
    nodes = []
    while i < len(tokens):
        kind, val = tokens[i]
        if kind == "text":
            nodes.append(("text", val))
            i += 1
        elif val.startswith(("if ", "range ")):
            head = val
            branches, i = [], i + 1
            body, i = _parse(tokens, i, stop=("end", "else"))
            branches.append((head, body))
            while tokens[i - 1][1].startswith("else"):
                cond = tokens[i - 1][1]
                body, i = _parse(tokens, i, stop=("end", "else"))
                branches.append((cond, body))
            nodes.append(("block", branches))
        elif val == "end" or val.startswith("else"):
            return nodes, i + 1
        else:
            nodes.append(("expr", val))
            i += 1
    return nodes, i


def _eval(expr: str, env):
    expr = expr.strip()
    if expr.startswith("(") and expr.endswith(")"):
        return _eval(expr[1:-1], env)
    if expr.startswith('"'):
        import json

        return json.loads(expr)
    if re.fullmatch(r"-?\d+", expr):
        return int(expr)
    parts = _split(expr)
    if len(parts) > 1:
        fn, args = parts[0], parts[1:]
        if fn == "eq":
            return _eval(args[0], env) == _eval(args[1], env)
        if fn == "not":
            return not _eval(args[0], env)
        if fn == "and":
            value = None
            for a in args:
                value = _eval(a, env)
                if not value:
                    return value
            return value
        if fn == "index":
            return _eval(args[0], env)[_eval(args[1], env)]
        raise AssertionError(f"unknown function {fn}")
    m = re.fullmatch(r"(\(.*\)|\$\w+)\.(\w+)", expr)
    if m:
        obj = _eval(m.group(1), env)
        return obj[m.group(2).lower()]
    return env[expr]


def _split(expr: str) -> list[str]:
    parts, depth, cur, quote = [], 0, "", False
    for ch in expr:
        if ch == '"':
            quote = not quote
        if not quote and ch == "(":
            depth += 1
        if not quote and ch == ")":
            depth -= 1
        if ch == " " and depth == 0 and not quote:
            if cur:
                parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        parts.append(cur)
    # "(index .Messages 0).Role" is one operand
    merged = []
    for p in parts:
        if merged and p.startswith(".") and merged[-1].endswith(")"):
            merged[-1] += p
        else:
            merged.append(p)
    return merged


def _exec(nodes, env, out):
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "expr":
            m = re.fullmatch(r"(\$\w+)\s*(:?=)\s*(.+)", node[1])
            if m:
                env[m.group(1)] = _eval(m.group(3), env)
            else:
                out.append(str(_eval(node[1], env)))
        else:
            branches = node[1]
            head, body = branches[0]
            if head.startswith("range "):
                m = re.fullmatch(r"range (\$\w+), (\$\w+) := (\.\w+)", head)
                for i, item in enumerate(env[m.group(3)]):
                    env[m.group(1)], env[m.group(2)] = i, item
                    _exec(body, env, out)
                continue
            for cond, body in branches:
                if cond == "else" or _eval(cond.split(" ", 1)[1] if cond.startswith("if ")
                                           else cond[len("else if "):], env):
                    _exec(body, env, out)
                    break


# ---- the families ----------------------------------------------------------------------------------------

def check_equivalent(template: str, bos: str, conversations=CONVERSATIONS, eos=()) -> None:
    fmt = derive(template, bos_token=bos, eos_tokens=list(eos))
    tpl = go_template(fmt)
    for msgs in conversations:
        want = jinja_render(template, msgs, bos_token=bos)
        want = want[len(fmt.bos):] if fmt.bos and want.startswith(fmt.bos) else want
        assert render_messages(fmt, msgs) == want
        assert go_render(tpl, msgs) == want, msgs
    return fmt


def test_chatml_of_the_embedded_model(smollm2_template):
    fmt = check_equivalent(smollm2_template, "<|im_start|>", eos=["<|im_end|>"])
    assert fmt.family == "chatml" and fmt.system == "turn" and fmt.bos == ""
    # the template's own default system prompt, used when the conversation has none
    assert "You are a helpful AI assistant named SmolLM" in fmt.default_system
    assert fmt.stops == ["<|im_end|>"]
    tpl = go_template(fmt)
    assert tpl.count("{{ end }}") == tpl.count("{{ if ") + tpl.count("{{ range ")
    assert "<|im_start|>user\n{{ $m.Content }}<|im_end|>\n" in tpl
    assert tpl.endswith("<|im_start|>assistant\n")


def test_chatml_with_a_default_system_prompt_qwen():
    fmt = check_equivalent(trl_template("qwen2_5"), "")
    assert fmt.family == "chatml" and "You are Qwen" in fmt.default_system


def test_llama3_drops_the_bos_the_runtime_adds():
    fmt = check_equivalent(trl_template("llama3"), "<|begin_of_text|>", eos=["<|eot_id|>", "<|end_of_text|>"])
    assert fmt.family == "llama3" and fmt.bos == "<|begin_of_text|>"
    assert fmt.stops == ["<|eot_id|>", "<|end_of_text|>"]
    assert "<|begin_of_text|>" not in go_template(fmt)


def test_llama3_1_knowledge_date_header_is_kept():
    fmt = check_equivalent(trl_template("llama3_1"), "<|begin_of_text|>")
    assert "Cutting Knowledge Date" in fmt.default_system
    assert "Cutting Knowledge Date" in fmt.first_system[0]


def test_gemma3_folds_the_system_prompt_into_the_first_user_turn():
    fmt = check_equivalent(trl_template("gemma3"), "<bos>")
    assert fmt.family == "gemma" and fmt.system == "first_user" and fmt.fold_separator == "\n\n"
    assert fmt.stops == ["<end_of_turn>"]


def test_gemma_without_system_role_gets_no_system_line():
    conversations = [c for c in CONVERSATIONS if c[0]["role"] != "system"]
    fmt = check_equivalent(trl_template("gemma"), "<bos>", conversations)
    assert fmt.system == "none" and not fmt.supports_system
    text = Modelfile("m.gguf", fmt, system="Answer briefly.").text()
    assert "SYSTEM" not in [line.split(" ")[0] for line in text.splitlines()]
    assert "refuses system messages" in text and "Answer briefly." in text


def test_unknown_family_is_said_not_guessed():
    with pytest.raises(UnknownChatFormat) as e:
        derive(trl_template("phi3"), bos_token="<s>")
    assert "not ChatML" in str(e.value) and "Llama 3" in str(e.value) and "Gemma" in str(e.value)
    assert "by hand" in str(e.value)
    text = Modelfile("m.gguf", None, system="Be brief.", note=str(e.value), stops=["<|end|>"]).text()
    assert "TEMPLATE" not in [line.split(" ")[0] for line in text.splitlines()]
    assert "# the chat template is not ChatML" in text
    assert 'PARAMETER stop "<|end|>"' in text and 'SYSTEM """Be brief."""' in text


def test_chatml_markers_in_another_layout_are_refused():
    odd = ("{% for m in messages %}<|im_start|>{{ m['role'] }}: {{ m['content'] }}<|im_end|>\n{% endfor %}"
           "{% if add_generation_prompt %}<|im_start|>assistant: {% endif %}")
    with pytest.raises(UnknownChatFormat, match="does not follow the standard chatml layout"):
        derive(odd)


def test_no_chat_template():
    with pytest.raises(UnknownChatFormat, match="no chat template"):
        derive(None)


def test_template_delimiters_in_literal_text_are_quoted(smollm2_template):
    tricky = smollm2_template.replace("You are a helpful AI assistant", "Use {{ braces }} as you like")
    fmt = check_equivalent(tricky, "<|im_start|>")
    assert '{{ "<|im_start|>system\\nUse {{ braces }}' in go_template(fmt)


def test_modelfile_parts(smollm2_template):
    fmt = derive(smollm2_template, bos_token="<|im_start|>", eos_tokens=["<|im_end|>", "<|endoftext|>"])
    text = Modelfile("run-q8_0.gguf", fmt, system="Answer briefly.\nIn English.").text()
    lines = text.splitlines()
    assert "FROM ./run-q8_0.gguf" in lines
    assert 'PARAMETER stop "<|im_end|>"' in lines and 'PARAMETER stop "<|endoftext|>"' in lines
    tpl = re.search(r'^TEMPLATE """(.*?)"""$', text, re.DOTALL | re.MULTILINE).group(1)
    assert tpl == go_template(fmt)
    assert re.search(r'^SYSTEM """Answer briefly.\nIn English."""$', text, re.MULTILINE)


def test_ollama_names():
    assert ollama_name("Translate K8s docs → 中文!") == "translate-k8s-docs"
    assert ollama_name("  ") == "tuitune-model"
    assert ollama_name("20261203-101010-lora-ab12") == "20261203-101010-lora-ab12"
