"""TRL's standard dataset formats and the preference (ranking) formats, as tuitune samples.

- prompt/completion (TRL): plain strings, or conversational (`prompt` a message list ending with the user's
  turn, `completion` one assistant message) -> an ordinary sample.
- preference: TRL prompt/chosen/rejected (plain or conversational), TRL's implicit prompt (`chosen` and
  `rejected` whole conversations sharing everything but the last answer), LLaMA-Factory's ranking formats
  (Alpaca `instruction`/`input` + `chosen`/`rejected`; ShareGPT `conversations` + `chosen`/`rejected`
  messages), OpenAI's preference fine-tuning format (`input.messages`, `preferred_output`,
  `non_preferred_output`) -> a sample whose output is the chosen answer and whose `original` holds the rejected one: the
  same shape a review edit leaves, so `preferences.preference_pairs` (DPO training and `export --format dpo`)
  gives the pair back unchanged, and SFT trains on the chosen answer.
"""

from __future__ import annotations

from tuitune.core.data.messages import one_answer, prompt_pairs, read_turns, refuse_tool_definitions
from tuitune.core.data.records import Issue, Record, kind_of
from tuitune.core.data.samples import Sample


def pair_sample(*, instruction: str, chosen: str, rejected: str, input: str = "", system: str = "",
                history: list[tuple[str, str]] | None = None) -> Sample:
    """A preference pair as the project stores it (the rejected answer is the sample's `original` output)."""
    history = history or []
    return Sample(instruction=instruction, input=input, output=chosen, system=system, history=history,
                  original={"instruction": instruction, "input": input, "output": rejected, "system": system})


def _answers(rec: Record, role_key: str = "role", content_key: str = "content") -> tuple[str, str]:
    got = []
    for key in ("chosen", "rejected"):
        if key not in rec.data or rec.data[key] is None:
            other = "rejected" if key == "chosen" else "chosen"
            rec.problem(key, f"missing; a preference record needs both chosen and rejected answers (it has only "
                             f"{other})")
            got.append("")
        else:
            got.append(one_answer(rec, key, rec.data[key], role_key, content_key))
    chosen, rejected = got
    if chosen and chosen == rejected:
        rec.problem("rejected", "is the same as chosen; a preference pair needs two different answers")
    return chosen, rejected


def _no_output(rec: Record) -> None:
    if rec.data.get("output") not in (None, ""):
        rec.problem("output", "a preference record holds chosen and rejected answers; an output beside them is "
                              "ambiguous: remove it, or import it as a separate record")


def alpaca_ranking(rec: Record) -> list[Sample]:
    """LLaMA-Factory's Alpaca ranking format (also what `tuitune export --format dpo` writes)."""
    from tuitune.core.data.formats import parse_history

    instruction = rec.text("instruction", required=True)
    input_ = rec.text("input", required=False)
    system = rec.text("system", required=False)
    history = parse_history(rec)
    _no_output(rec)
    chosen, rejected = _answers(rec)
    if rec.issues:
        return []
    return [pair_sample(instruction=instruction, input=input_, chosen=chosen, rejected=rejected, system=system,
                        history=history)]


def sharegpt_ranking(rec: Record) -> list[Sample]:
    """LLaMA-Factory's ShareGPT ranking format: `conversations` (from/value) or `messages` (role/content) up to
    the user's last turn, `chosen` and `rejected` one assistant message each."""
    key, role_key, content_key = (("conversations", "from", "value") if "conversations" in rec.data
                                  else ("messages", "role", "content"))
    refuse_tool_definitions(rec)
    system, turns = read_turns(rec, key, rec.data.get(key), role_key, content_key,
                               system=rec.text("system", required=False))
    prompt = prompt_pairs(rec, key, turns) if not rec.issues else None
    chosen, rejected = _answers(rec, role_key, content_key)
    if rec.issues or prompt is None:
        return []
    instruction, history = prompt
    return [pair_sample(instruction=instruction, chosen=chosen, rejected=rejected, system=system, history=history)]


def _prompt(rec: Record) -> tuple[str, str, list[tuple[str, str]]] | None:
    """(system, instruction, history) of a TRL `prompt`: a string, or messages ending with the user's turn."""
    prompt = rec.data.get("prompt")
    system = rec.text("system", required=False)
    if isinstance(prompt, list):
        system, turns = read_turns(rec, "prompt", prompt, "role", "content", system=system)
        got = prompt_pairs(rec, "prompt", turns) if not rec.issues else None
        return None if got is None else (system, got[0], got[1])
    instruction = rec.text("prompt", required=True)
    return None if rec.issues else (system, instruction, [])


def trl_preference(rec: Record) -> list[Sample]:
    """TRL's preference format, explicit prompt (`prompt` + `chosen` + `rejected`) or implicit (`chosen` and
    `rejected` whole conversations)."""
    refuse_tool_definitions(rec)
    if "prompt" not in rec.data:
        return _implicit_preference(rec)
    prompt = _prompt(rec)
    chosen, rejected = _answers(rec)
    if rec.issues or prompt is None:
        return []
    system, instruction, history = prompt
    return [pair_sample(instruction=instruction, chosen=chosen, rejected=rejected, system=system, history=history)]


def _implicit_preference(rec: Record) -> list[Sample]:
    convs = {}
    for key in ("chosen", "rejected"):
        val = rec.data.get(key)
        if val is None:
            other = "rejected" if key == "chosen" else "chosen"
            rec.problem(key, f"missing; a preference record needs both chosen and rejected answers (it has only "
                             f"{other})")
        elif isinstance(val, list):
            system, turns = read_turns(rec, key, val, "role", "content", system=rec.text("system", required=False))
            convs[key] = (system, turns)
        else:
            rec.problem("prompt", f"missing; with {key} given as {kind_of(val)} the prompt cannot be told from the "
                                  f"answer: add a prompt field (TRL's explicit-prompt format), or give chosen and "
                                  f"rejected as whole conversations (message lists)")
            break
    if rec.issues:
        return []
    (sys_c, chosen), (sys_r, rejected) = convs["chosen"], convs["rejected"]
    if sys_c != sys_r or chosen[:-1] != rejected[:-1]:
        rec.problem("rejected", "differs from chosen before its last message; with an implicit prompt, chosen and "
                                "rejected must share every message but the last (the answer)")
        return []
    for key, turns in (("chosen", chosen), ("rejected", rejected)):
        if turns and turns[-1][0] != "assistant":
            rec.problem(key, "expected the conversation to end with the assistant's answer")
    prompt = prompt_pairs(rec, "chosen", chosen[:-1]) if not rec.issues else None
    if rec.issues or prompt is None:
        return []
    c, r = chosen[-1][1], rejected[-1][1]
    if c == r:
        rec.problem("rejected", "is the same as chosen; a preference pair needs two different answers")
        return []
    return [pair_sample(instruction=prompt[0], chosen=c, rejected=r, system=sys_c, history=prompt[1])]


def trl_prompt_completion(rec: Record) -> list[Sample]:
    """TRL's prompt/completion format, plain (two strings) or conversational (messages)."""
    if "label" in rec.data:
        rec.problem("label", "an unpaired preference record (prompt, completion, label: TRL's KTO format) cannot be "
                             "imported: tuitune keeps preference pairs (chosen and rejected answers to one prompt); "
                             "import the desirable completions without their label, or pairs")
        return []
    refuse_tool_definitions(rec)
    prompt = _prompt(rec)
    if "completion" not in rec.data or rec.data["completion"] is None:
        rec.problem("completion", "missing; expected the answer (a string, or a list with one assistant message)")
        completion = ""
    else:
        completion = one_answer(rec, "completion", rec.data["completion"])
    if rec.issues or prompt is None:
        return []
    system, instruction, history = prompt
    return [Sample(instruction=instruction, output=completion, system=system, history=history)]



def openai_preference(rec: Record) -> list[Sample]:
    """OpenAI's preference fine-tuning format: `input` {messages, tools}, `preferred_output` and
    `non_preferred_output` one assistant message each."""
    inp = rec.data.get("input")
    prompt = None
    if not isinstance(inp, dict):
        rec.problem("input", f"expected an object with the prompt's messages, got {kind_of(inp)}")
    else:
        sub = Record(rec.file, rec.where, inp)
        refuse_tool_definitions(sub)
        system, turns = read_turns(sub, "messages", inp.get("messages"), "role", "content")
        got = prompt_pairs(sub, "messages", turns) if not sub.issues else None
        rec.issues += [Issue(i.file, i.where, f"input.{i.field}", i.message) for i in sub.issues]
        prompt = None if got is None else (system, got[0], got[1])
    answers = []
    for key in ("preferred_output", "non_preferred_output"):
        if rec.data.get(key) is None:
            rec.problem(key, "missing; a preference record needs preferred_output and non_preferred_output")
            answers.append("")
        else:
            answers.append(one_answer(rec, key, rec.data[key]))
    if answers[0] and answers[0] == answers[1]:
        rec.problem("non_preferred_output", "is the same as preferred_output; a preference pair needs two different "
                                            "answers")
    if rec.issues or prompt is None:
        return []
    system, instruction, history = prompt
    return [pair_sample(instruction=instruction, chosen=answers[0], rejected=answers[1], system=system,
                        history=history)]
