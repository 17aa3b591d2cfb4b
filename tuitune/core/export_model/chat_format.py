"""A model's chat template (Jinja, as Hugging Face tokenizers carry it) recognised and rewritten as an Ollama
TEMPLATE (Go text/template over `.Messages`).

Jinja cannot be translated to Go in general, so this recognises three families by their turn markers -- ChatML
(`<|im_start|>`: SmolLM2, Qwen, ...), Llama 3 (`<|start_header_id|>`) and Gemma (`<start_of_turn>`) -- and
derives the rest by rendering the model's own template on probe conversations: the system block (its own turn,
folded into the first user turn as Gemma 3 does, or refused as Gemma 1/2 do), a default system prompt the template
writes when the conversation has none (SmolLM2's "You are a helpful AI assistant named SmolLM...", Llama 3.1's
knowledge-date header) and a leading `bos_token` (dropped: llama.cpp adds BOS itself where the GGUF asks for it).
The result is accepted only when `render` (which does what the Go template does) reproduces the Jinja rendering
of every probe exactly; any other template raises `UnknownChatFormat` saying so, rather than guessing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from tuitune.core.export_model import ExportError

# family -> (marker in the template, the end-of-turn text that is also a stop)
FAMILIES = {"chatml": ("<|im_start|>", "<|im_end|>"), "llama3": ("<|start_header_id|>", "<|eot_id|>"),
            "gemma": ("<start_of_turn>", "<end_of_turn>")}
OLLAMA_TEMPLATE_DOCS = "https://github.com/ollama/ollama/blob/main/docs/template.md"

# Probe contents: plain words, so `| trim` and the like leave them alone.
SYS, U1, A1, U2 = "PROBESYSTEMTEXT", "PROBEUSERONE", "PROBEANSWERONE", "PROBEUSERTWO"


class UnknownChatFormat(ExportError):
    """The chat template is not one this module can rewrite for Ollama faithfully."""


@dataclass(frozen=True)
class ChatFormat:
    """What a chat template writes, piece by piece (no Jinja left)."""

    family: str  # chatml | llama3 | gemma
    turns: dict[str, tuple[str, str]]  # role (system/user/assistant) -> (text before the content, text after)
    generation: str  # the assistant's opening, written after the last message
    system: str  # turn: a system turn of its own | first_user: folded into the first user turn | none: refused
    first_system: tuple[str, str] = ("", "")  # turn: before/after a leading system message's content
    default_system: str = ""  # turn: what the template writes when the conversation has no system message
    fold_separator: str = ""  # first_user: between the system text and the user's text
    bos: str = ""  # the bos_token the Jinja template starts with (dropped here: the runtime adds BOS)
    stops: list[str] = field(default_factory=list)

    @property
    def supports_system(self) -> bool:
        return self.system != "none"


def family_of(chat_template: str) -> str | None:
    for name, (marker, _) in FAMILIES.items():
        if marker in chat_template:
            return name
    return None


def _standard_turns(family: str) -> tuple[dict[str, tuple[str, str]], str]:
    if family == "chatml":
        turns = {r: (f"<|im_start|>{r}\n", "<|im_end|>\n") for r in ("system", "user", "assistant")}
        return turns, "<|im_start|>assistant\n"
    if family == "llama3":
        turns = {r: (f"<|start_header_id|>{r}<|end_header_id|>\n\n", "<|eot_id|>")
                 for r in ("system", "user", "assistant")}
        return turns, "<|start_header_id|>assistant<|end_header_id|>\n\n"
    turns = {"user": ("<start_of_turn>user\n", "<end_of_turn>\n"),
             "assistant": ("<start_of_turn>model\n", "<end_of_turn>\n")}
    return turns, "<start_of_turn>model\n"


def _messages(*pairs: tuple[str, str]) -> list[dict]:
    return [{"role": r, "content": c} for r, c in pairs]


PROBES_NO_SYSTEM = [_messages(("user", U1)), _messages(("user", U1), ("assistant", A1), ("user", U2))]
PROBES_SYSTEM = [_messages(("system", SYS), ("user", U1)),
                 _messages(("system", SYS), ("user", U1), ("assistant", A1), ("user", U2))]


def jinja_render(chat_template: str, messages: list[dict], *, bos_token: str = "", eos_token: str = "") -> str:
    """The Jinja template rendered as transformers renders it (with the generation prompt)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template([messages], chat_template=chat_template, add_generation_prompt=True,
                                        bos_token=bos_token, eos_token=eos_token)
    return rendered[0]


def derive(chat_template: str | None, *, bos_token: str = "", eos_tokens: list[str] | tuple[str, ...] = ()
           ) -> ChatFormat:
    """The ChatFormat equivalent to `chat_template`, or UnknownChatFormat saying why there is none."""
    if not chat_template:
        raise UnknownChatFormat("the model has no chat template, so the Modelfile has no TEMPLATE; Ollama would "
                                "send your text to it raw. Write a TEMPLATE by hand (" + OLLAMA_TEMPLATE_DOCS + ")")
    family = family_of(chat_template)
    if family is None:
        raise UnknownChatFormat(
            "the chat template is not ChatML (<|im_start|>), Llama 3 (<|start_header_id|>) or Gemma "
            f"(<start_of_turn>) style (it begins {chat_template[:60]!r}); tuitune does not guess a TEMPLATE for "
            f"other families. Write the Modelfile's TEMPLATE by hand ({OLLAMA_TEMPLATE_DOCS}), or use the GGUF with "
            "a runtime that reads the chat template embedded in the file (llama.cpp's llama-server --jinja, "
            "LM Studio).")
    bos = bos_token if bos_token and "bos_token" in chat_template else ""

    def render(msgs: list[dict]) -> str:
        try:
            text = jinja_render(chat_template, msgs, bos_token=bos_token, eos_token=eos_tokens[0] if eos_tokens
                                else "")
        except Exception as e:  # a template's raise_exception, or a Jinja error
            raise _Refused(str(e)) from e
        return text[len(bos):] if bos and text.startswith(bos) else text

    turns, generation = _standard_turns(family)
    user_pre, user_suf = turns["user"]
    try:
        plain = render(PROBES_NO_SYSTEM[0])
    except _Refused as e:
        raise _unfaithful(family, f"it fails on a single user message ({e})") from None
    tail = user_pre + U1 + user_suf + generation
    if not plain.endswith(tail):
        raise _unfaithful(family, f"a single user message renders as {plain!r}, not ...{tail!r}")
    default_system = plain[: -len(tail)]
    fmt = {"family": family, "turns": turns, "generation": generation, "bos": bos,
           "stops": _stops(family, eos_tokens)}
    try:
        with_system = render(PROBES_SYSTEM[0])
    except _Refused:
        with_system = None
    if with_system is None:
        fmt.update(system="none")
        if default_system:
            raise _unfaithful(family, f"it writes {default_system!r} before the first turn")
    elif with_system.startswith(user_pre + SYS) and with_system.endswith(U1 + user_suf + generation):
        sep = with_system[len(user_pre + SYS): -len(U1 + user_suf + generation)]
        fmt.update(system="first_user", fold_separator=sep)
        if default_system:
            raise _unfaithful(family, f"it writes {default_system!r} before the first turn")
    elif SYS in with_system and with_system.endswith(tail):
        block = with_system[: -len(tail)]
        i = block.find(SYS)
        fmt.update(system="turn", first_system=(block[:i], block[i + len(SYS):]), default_system=default_system)
        turns.setdefault("system", (block[:i], block[i + len(SYS):]))
    else:
        raise _unfaithful(family, f"a system + user message renders as {with_system!r}")
    result = ChatFormat(**fmt)
    probes = PROBES_NO_SYSTEM + (PROBES_SYSTEM if result.supports_system else [])
    for msgs in probes:
        want, got = render(msgs), render_messages(result, msgs)
        if want != got:
            at = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))
            raise _unfaithful(family, f"{len(msgs)} messages render as {want!r}; the standard {family} layout "
                                      f"gives {got!r} (first difference at character {at})")
    return result


class _Refused(Exception):
    pass


def _unfaithful(family: str, why: str) -> UnknownChatFormat:
    return UnknownChatFormat(f"the chat template uses {family} markers but does not follow the standard {family} "
                             f"layout: {why}. tuitune writes no TEMPLATE it cannot reproduce exactly; write it by "
                             f"hand ({OLLAMA_TEMPLATE_DOCS}).")


def _stops(family: str, eos_tokens) -> list[str]:
    out = [FAMILIES[family][1]]
    for t in eos_tokens:
        if t and t not in out:
            out.append(t)
    return out


# ---- what the Go template does, in Python ---------------------------------------------------------------

def render_messages(fmt: ChatFormat, messages: list[dict]) -> str:
    """The prompt text the Ollama TEMPLATE of `fmt` produces for `messages` (without BOS), generation prompt
    included. Roles other than system/user/assistant are skipped, as the TEMPLATE skips them."""
    out = []
    if fmt.system == "turn" and not (messages and messages[0]["role"] == "system"):
        out.append(fmt.default_system)
    pending = ""
    for i, m in enumerate(messages):
        role, content = m["role"], m["content"]
        if role == "system":
            if fmt.system == "turn":
                pre, suf = fmt.first_system if i == 0 else fmt.turns["system"]
                out.append(pre + content + suf)
            elif fmt.system == "first_user":
                pending = content
        elif role == "user":
            pre, suf = fmt.turns["user"]
            if pending:
                pre, pending = pre + pending + fmt.fold_separator, ""
            out.append(pre + content + suf)
        elif role == "assistant":
            pre, suf = fmt.turns["assistant"]
            out.append(pre + content + suf)
    out.append(fmt.generation)
    return "".join(out)


def _lit(text: str) -> str:
    """Literal text in a Go template: as it is, unless it holds template delimiters (then a Go string literal)."""
    if "{{" in text or "}}" in text:
        return "{{ " + json.dumps(text) + " }}"
    return text


def go_template(fmt: ChatFormat) -> str:
    """The Ollama TEMPLATE (Go text/template over .Messages) that renders like `render_messages`."""
    user_pre, user_suf = fmt.turns["user"]
    a_pre, a_suf = fmt.turns["assistant"]
    parts = []
    if fmt.system == "turn" and fmt.default_system:
        parts.append('{{ if not (and .Messages (eq (index .Messages 0).Role "system")) }}'
                     + _lit(fmt.default_system) + "{{ end }}")
    if fmt.system == "first_user":
        parts.append('{{ $system := "" }}')
    parts.append("{{ range $i, $m := .Messages }}")
    if fmt.system == "turn":
        s_pre, s_suf = fmt.turns["system"]
        f_pre, f_suf = fmt.first_system
        if (f_pre, f_suf) == (s_pre, s_suf):
            parts.append('{{ if eq $m.Role "system" }}' + _lit(s_pre) + "{{ $m.Content }}" + _lit(s_suf))
        else:  # a leading system message is written differently (Llama 3.1's date header)
            parts.append('{{ if eq $m.Role "system" }}{{ if eq $i 0 }}' + _lit(f_pre) + "{{ $m.Content }}"
                         + _lit(f_suf) + "{{ else }}" + _lit(s_pre) + "{{ $m.Content }}" + _lit(s_suf) + "{{ end }}")
    elif fmt.system == "first_user":
        parts.append('{{ if eq $m.Role "system" }}{{ $system = $m.Content }}')
    else:
        parts.append('{{ if eq $m.Role "system" }}')
    user = _lit(user_pre)
    if fmt.system == "first_user":
        user += "{{ if $system }}{{ $system }}" + _lit(fmt.fold_separator) + '{{ $system = "" }}{{ end }}'
    parts.append('{{ else if eq $m.Role "user" }}' + user + "{{ $m.Content }}" + _lit(user_suf))
    parts.append('{{ else if eq $m.Role "assistant" }}' + _lit(a_pre) + "{{ $m.Content }}" + _lit(a_suf))
    parts.append("{{ end }}{{ end }}" + _lit(fmt.generation))
    return "".join(parts)
