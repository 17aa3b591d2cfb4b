"""What a synthesis request says: the JSON schemas the teacher answers in, and the chat messages of each
request (task, rotating examples, lessons, topic), rendered from the templates in prompts/."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from tuitune.core.data.samples import KEPT_STATUSES, Sample
from tuitune.core.data.store import Store
from tuitune.core.synth import prompts
from tuitune.core.synth.types import RoundParams

# ---- schemas --------------------------------------------------------------------------------------------

def samples_schema(k: int, max_chars: int, *, constrained: bool) -> dict:
    return _schema("samples", ("instruction", "input", "output"), k, max_chars, constrained)


def inputs_schema(k: int, max_chars: int, *, constrained: bool) -> dict:
    return _schema("inputs", ("instruction", "input"), k, max_chars, constrained)


def _schema(key: str, fields: tuple[str, ...], k: int, max_chars: int, constrained: bool) -> dict:
    props = {}
    for f in fields:
        prop: dict = {"type": "string"}
        if constrained:  # length bounds keep a weak model from rambling until max_tokens
            prop["maxLength"] = max_chars
            if f != "input":
                prop["minLength"] = 2
        props[f] = prop
    items = {"type": "object", "properties": props, "required": list(fields), "additionalProperties": False}
    arr: dict = {"type": "array", "items": items}
    if constrained:
        arr.update(minItems=k, maxItems=k)
    return {"type": "object", "properties": {key: arr}, "required": [key], "additionalProperties": False}


TOPICS_SCHEMA = {"type": "object", "properties": {"topics": {"type": "array", "items": {"type": "string"}}},
                 "required": ["topics"], "additionalProperties": False}


# ---- prompts ---------------------------------------------------------------------------------------------

def _example(s: Sample) -> dict:
    return {"instruction": s.instruction, "input": s.input, "output": s.output}


def _get_lessons(store: Store) -> list[str]:
    from tuitune.core.data.review import lessons

    return list(lessons(store))


@dataclass
class PromptContext:
    task_description: str
    system_prompt: str
    pool: list[Sample]
    lessons: list[str]
    language_rule: str
    project: Path | None = None

    def examples_for(self, i: int, k: int) -> list[Sample]:
        """Request i's examples: a window of k over the (shuffled) pool, moving by k each request."""
        if not self.pool:
            return []
        k = min(k, len(self.pool))
        start = (i * k) % len(self.pool)
        return [self.pool[(start + j) % len(self.pool)] for j in range(k)]


def build_context(store: Store, params: RoundParams, *, project: Path | None = None,
                  shuffle_seed: int = 0) -> PromptContext:
    task = store.get_task()
    seeds = store.samples(origin="seed")
    kept = [s for s in store.samples(status=KEPT_STATUSES) if s.origin != "seed"]
    pool = seeds + kept
    random.Random(shuffle_seed).shuffle(pool)
    lessons = _get_lessons(store) if params.use_lessons else []
    texts = [task.description, task.system_prompt] + [s.user_content() + s.output for s in pool[:20]]
    return PromptContext(task.description, task.system_prompt, pool, lessons, prompts.language_rule(texts), project)


def generation_messages(ctx: PromptContext, params: RoundParams, i: int, k: int) -> list[dict]:
    topic = params.topics[i % len(params.topics)] if params.topics else ""
    common = {"task_description": ctx.task_description, "system_prompt": ctx.system_prompt,
              "examples": [_example(s) for s in ctx.examples_for(i, params.examples)], "lessons": ctx.lessons,
              "topic": topic, "n": k, "language_rule": ctx.language_rule}
    system = prompts.render("synth_system.md.j2", project=ctx.project, **common)
    template = "synth_samples.md.j2" if params.mode == "samples" else "synth_inputs.md.j2"
    user = prompts.render(template, project=ctx.project, **common)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def answer_messages(ctx: PromptContext, params: RoundParams, sample: Sample, i: int) -> list[dict]:
    examples = [{"user": s.user_content(), "output": s.output} for s in ctx.examples_for(i, min(params.examples, 2))]
    system = prompts.render("synth_answer_system.md.j2", project=ctx.project, system_prompt=ctx.system_prompt,
                            task_description=ctx.task_description, examples=examples, lessons=ctx.lessons,
                            language_rule=ctx.language_rule)
    msgs = [{"role": "system", "content": system}]
    for q, a in sample.history:
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return msgs + [{"role": "user", "content": sample.user_content()}]


def messages_text(messages: list[dict]) -> str:
    return "\n\n".join(f"[{m['role']}]\n{m['content'].rstrip()}" for m in messages) + "\n"
