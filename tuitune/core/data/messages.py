"""Chat message lists in records (ShareGPT from/value, OpenAI/TRL role/content): the roles tuitune knows,
the turns a sample can hold, and tool use, which a sample cannot hold and which is refused by name (never
dropped: a record with a tool call would otherwise train on a conversation with a hole in it)."""

from __future__ import annotations

from tuitune.core.data.records import Record, kind_of

ROLE = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system",
        "model": "assistant"}
# Roles of tool use: OpenAI (tool, function), Llama 3 (ipython), LLaMA-Factory's ShareGPT tags.
TOOL_ROLES = ("tool", "function", "ipython", "function_call", "observation")
TOOL_KEYS = ("tool_calls", "function_call", "tool_call_id")
_NO_TOOLS = ("cannot be imported: a tuitune sample holds user and assistant text turns only, so the call would be "
             "lost; remove the records that use tools (or write the calls out as text) and import again")


def refuse_tool_definitions(rec: Record) -> None:
    """Tool definitions beside the messages (OpenAI fine-tuning `tools`/`functions`, LLaMA-Factory `tools`)."""
    for key in ("tools", "functions"):
        if rec.data.get(key):
            rec.problem(key, f"tool definitions {_NO_TOOLS}")


def read_turns(rec: Record, field: str, msgs, role_key: str, content_key: str, *, system: str = "",
               first: str = "user") -> tuple[str, list[tuple[str, str]]]:
    """The system prompt (`system`, or a leading system message) and the turns (role, text) of a message list.
    Problems go to `rec`: a malformed message, an unknown role, tool use, turns that do not alternate user,
    assistant starting with `first`."""
    if not isinstance(msgs, list) or not msgs:
        rec.problem(field, f"expected a non-empty list of messages, got {kind_of(msgs)}")
        return system, []
    turns: list[tuple[str, str]] = []
    other = {"user": "assistant", "assistant": "user"}
    for i, m in enumerate(msgs):
        where = f"{field}[{i}]"
        got = read_message(rec, where, m, role_key, content_key)
        if got is None:
            continue
        role, content = got
        if role == "system":
            if i != 0:
                rec.problem(where, "a system message is only allowed first")
            system = content
            continue
        expected = first if len(turns) % 2 == 0 else other[first]
        if role != expected:
            rec.problem(f"{where}.{role_key}", f"expected a {expected} turn here (turns must alternate user, "
                                               f"assistant, starting with {first}), got {role}")
            continue
        turns.append((role, content))
    return system, turns


def read_message(rec: Record, where: str, m, role_key: str, content_key: str) -> tuple[str, str] | None:
    """(role, text) of one message, or None when its role is unusable (the problem goes to `rec`; a problem
    with its text is reported too, and the role still counts for the turn order)."""
    if not isinstance(m, dict):
        rec.problem(where, f"expected an object with {role_key!r} and {content_key!r}, got {kind_of(m)}")
        return None
    raw_role = m.get(role_key)
    if raw_role in TOOL_ROLES:
        rec.problem(f"{where}.{role_key}", f"a {raw_role!r} message (tool use) {_NO_TOOLS}")
        return None
    tool_key = next((k for k in TOOL_KEYS if m.get(k)), None)
    if tool_key:
        rec.problem(f"{where}.{tool_key}", f"tool calls {_NO_TOOLS}")
        return None
    role = ROLE.get(raw_role) if isinstance(raw_role, str) else None
    if role is None:
        rec.problem(f"{where}.{role_key}", f"expected one of human/gpt/system (or user/assistant), got {raw_role!r}")
        return None
    if role == "assistant" and m.get("weight") == 0:  # OpenAI fine-tuning: do not train on this turn
        rec.problem(f"{where}.weight", "0 (do not train on this answer) cannot be kept: tuitune trains on every "
                                       "assistant turn; remove the weight, or the record")
    return role, rec.text(content_key, required=True, obj=m, prefix=f"{where}.")


def answer_pairs(rec: Record, field: str, turns: list[tuple[str, str]]) -> list[tuple[str, str]] | None:
    """[(user, assistant), ...] of a conversation that ends with an assistant answer."""
    if len(turns) < 2 or len(turns) % 2:
        rec.problem(field, "expected user/assistant pairs ending with an assistant answer")
        return None
    return [(turns[i][1], turns[i + 1][1]) for i in range(0, len(turns), 2)]


def prompt_pairs(rec: Record, field: str, turns: list[tuple[str, str]]) -> tuple[str, list[tuple[str, str]]] | None:
    """(last user message, earlier (user, assistant) pairs) of a prompt that ends with a user message."""
    if not turns or len(turns) % 2 == 0:
        rec.problem(field, "expected a prompt ending with a user message (user/assistant turns, then the user's "
                           "question)")
        return None
    return turns[-1][1], [(turns[i][1], turns[i + 1][1]) for i in range(0, len(turns) - 1, 2)]


def one_answer(rec: Record, field: str, val, role_key: str = "role", content_key: str = "content") -> str:
    """An answer given as a string, one assistant message ({from/value} or {role/content}), or a list holding
    exactly one assistant message (TRL's conversational chosen/rejected/completion)."""
    if val is None:
        rec.problem(field, "missing; expected the answer (a string, or one assistant message)")
        return ""
    if isinstance(val, str):
        if not val.strip():
            rec.problem(field, "is empty; expected a non-empty answer")
        return val
    if isinstance(val, list):
        if len(val) != 1:
            rec.problem(field, f"expected exactly one assistant message, got a list of {len(val)} (a multi-turn "
                               f"answer cannot be a tuitune sample)")
            return ""
        return one_answer(rec, f"{field}[0]", val[0], role_key, content_key)
    if not isinstance(val, dict):
        rec.problem(field, f"expected a string or an assistant message, got {kind_of(val)}")
        return ""
    if role_key not in val and "from" in val:  # a ShareGPT message inside a role/content file, or the reverse
        role_key, content_key = "from", "value"
    elif role_key not in val and "role" in val:
        role_key, content_key = "role", "content"
    before = len(rec.issues)
    got = read_message(rec, field, val, role_key, content_key)
    if got is None or len(rec.issues) > before:
        return ""
    if got[0] != "assistant":
        rec.problem(f"{field}.{role_key}", f"expected an assistant message, got a {got[0]} message")
        return ""
    return got[1]
