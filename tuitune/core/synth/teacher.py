"""Teacher endpoints: any OpenAI-compatible chat API (OpenAI, DeepSeek, Qwen/DashScope, a remote vLLM, Ollama,
LM Studio) through the `openai` async client, and the embedded default (the embedded model served by vLLM).

Named teachers live in `<home>/teachers.yaml`:

    teachers:
      deepseek:
        base_url: https://api.deepseek.com/v1
        model: deepseek-chat
        api_key_env: DEEPSEEK_API_KEY     # the NAME of the variable; the key itself is never stored
        supports_json_schema: false       # true / false / auto (try it once, fall back to plain text)
        concurrency: 8                    # optional limits for a pool of teachers (teacher_pool.py): requests in
        rpm: 500                          # flight at most, requests and tokens (prompt estimate + max_tokens)
        tpm: 200000                       # in any 60 s; absent or null = no limit

Retries (429, 5xx, timeouts, dropped connections) are the openai client's own, with exponential backoff and
`Retry-After` honoured. Replies are parsed as JSON leniently (code fences, prose around it, a truncated array
keeps its complete items).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuitune.settings import Settings

TEACHERS_FILE = "teachers.yaml"
EMBEDDED = "embedded"
EMBEDDED_HINT = ("The embedded teacher is a 135M-parameter model: it works offline but writes weak data. "
                 "A stronger teacher (any OpenAI-compatible endpoint, e.g. a hosted model or a bigger local "
                 "one) gives much better samples; add it to teachers.yaml and choose it as the teacher.")


class TeacherError(Exception):
    """A teacher that cannot be configured or reached, with what to do next."""


class TeachersFileError(TeacherError):
    """teachers.yaml cannot be used as it is (bad input: the message names the file, the teacher and the field)."""


class BadResponse(Exception):
    """An HTTP 200 whose body is not a chat completion: an HTML page, a cut-off or foreign JSON body.
    One failed request (the round goes on); many in a row mean the endpoint is wrong."""


@dataclass
class TeacherConfig:
    """How to reach one OpenAI-compatible chat endpoint."""

    name: str
    base_url: str = ""  # empty for the embedded teacher (its server is started for the round)
    model: str = ""
    api_key_env: str = ""  # name of the environment variable holding the key ("" = no key needed)
    supports_json_schema: bool | str = "auto"  # True / False / "auto"
    timeout: float = 120.0  # seconds per request attempt
    max_retries: int = 4
    concurrency: int | None = None  # requests in flight at most (a teacher pool honours it); None = no limit
    rpm: int | None = None  # requests in any 60 s at most
    tpm: int | None = None  # tokens in any 60 s at most (prompt estimate + max_tokens, charged before sending)
    api_key: str | None = field(default=None, repr=False, compare=False)  # runtime only, never saved

    @property
    def embedded(self) -> bool:
        return self.name == EMBEDDED and not self.base_url

    def public(self) -> dict:
        """What may be written to the database and logs (never the key)."""
        d = asdict(self)
        d.pop("api_key")
        return d

    def resolve_key(self) -> str:
        if self.api_key:
            return self.api_key
        if not self.api_key_env:
            return "none"  # local servers (Ollama, LM Studio, vLLM without --api-key) accept any key
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise TeacherError(f"teacher {self.name!r} takes its API key from the environment variable "
                               f"{self.api_key_env}, which is not set; export {self.api_key_env}=... and try again")
        return key


def teachers_path(settings: Settings) -> Path:
    return settings.home / TEACHERS_FILE


def load_teachers(settings: Settings) -> dict[str, TeacherConfig]:
    """The named teachers: the built-in `embedded`, the settings' default endpoint (if TUITUNE_TEACHER_BASE_URL
    is set, as `default`), and the ones in teachers.yaml."""
    import yaml

    out = {EMBEDDED: TeacherConfig(EMBEDDED, timeout=600.0, supports_json_schema=True, max_retries=2)}
    if settings.teacher_base_url:
        out["default"] = TeacherConfig("default", settings.teacher_base_url, settings.teacher_model,
                                       settings.teacher_api_key_env)
    path = teachers_path(settings)
    if not path.exists():
        return out
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise TeachersFileError(f"{path} is not valid YAML ({e}); fix or delete it") from None
    except (OSError, UnicodeDecodeError) as e:
        what = "not UTF-8 text" if isinstance(e, UnicodeDecodeError) else e.strerror or str(e)
        raise TeachersFileError(f"cannot read {path} ({what}); fix or delete it") from None
    entries = data.get("teachers", data) if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise TeachersFileError(f"{path} must map teacher names to settings (name: {{base_url, model, "
                                f"api_key_env}})")
    known = set(TeacherConfig.__dataclass_fields__) - {"name", "api_key"}
    for name, cfg in entries.items():
        if not isinstance(cfg, dict) or not cfg.get("base_url") or not cfg.get("model"):
            raise TeachersFileError(f"{path}: teacher {name!r} needs at least base_url and model")
        if "api_key" in cfg:
            raise TeachersFileError(f"{path}: teacher {name!r} has an api_key; store the key in an environment "
                                    f"variable and put its name in api_key_env instead")
        unknown = set(cfg) - known
        if unknown:
            raise TeachersFileError(f"{path}: teacher {name!r} has unknown fields {sorted(unknown)}; known: "
                                    f"{sorted(known)}")
        for key, problem in ((k, _field_problem(k, v)) for k, v in cfg.items()):
            if problem:
                raise TeachersFileError(f"{path}: teacher {name!r}: {key}: {problem}")
        out[str(name)] = TeacherConfig(str(name), **cfg)
    return out


def _field_problem(key: str, value) -> str:
    """What is wrong with one teachers.yaml value ("" when nothing)."""
    if key in ("base_url", "model", "api_key_env"):
        return "" if isinstance(value, str) else f"expected text, got {value!r}"
    if key == "supports_json_schema":
        return "" if value in (True, False, "auto") else f"expected true, false or auto, got {value!r}"
    if key == "timeout":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 86400
        return "" if ok else f"expected seconds above 0 (at most 86400), got {value!r}"
    if key == "max_retries":
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100
        return "" if ok else f"expected a whole number from 0 to 100, got {value!r}"
    if key in LIMIT_FIELDS:
        ok = value is None or (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 10**9)
        return "" if ok else f"expected a whole number of at least 1 (or null for no limit), got {value!r}"
    return ""


LIMIT_FIELDS = ("concurrency", "rpm", "tpm")


def save_teacher(settings: Settings, config: TeacherConfig) -> Path:
    """Add or replace a named teacher in teachers.yaml (without any key)."""
    import yaml

    from tuitune.core import atomic

    if config.name == EMBEDDED:
        raise TeacherError(f"{EMBEDDED!r} is the built-in teacher's name; pick another")
    path = teachers_path(settings)
    data = {}
    if path.exists():
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    data.setdefault("teachers", {})
    entry = config.public()
    entry.pop("name")
    for key in LIMIT_FIELDS:  # no limit: left out of the file
        if entry.get(key) is None:
            entry.pop(key, None)
    data["teachers"][config.name] = entry
    atomic.write_text(path, yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    return path


def get_teacher(settings: Settings, name: str | None = None) -> TeacherConfig:
    teachers = load_teachers(settings)
    name = name or ("default" if "default" in teachers else EMBEDDED)
    if name not in teachers:
        raise TeacherError(f"no teacher named {name!r}; known: {', '.join(sorted(teachers))}. Add it to "
                           f"{teachers_path(settings)}")
    return teachers[name]


# ---- the client ------------------------------------------------------------------------------------

@dataclass
class Reply:
    text: str
    finish_reason: str | None
    completion_tokens: int = 0
    structured: bool = False  # the endpoint was asked for JSON-schema output
    teacher: str = ""  # the name of the teacher that answered


class Teacher:
    """An async chat client for one endpoint. `complete()` retries (openai client) and returns a Reply."""

    def __init__(self, config: TeacherConfig):
        if not config.base_url or not config.model:
            raise TeacherError(f"teacher {config.name!r} has no base_url/model; get its endpoint from "
                               f"the engine pool (EnginePool.live_teacher) or configure the endpoint")
        from openai import AsyncOpenAI

        self.config = config
        self.client = AsyncOpenAI(base_url=config.base_url, api_key=config.resolve_key(),
                                  max_retries=config.max_retries, timeout=config.timeout)
        self.json_schema = config.supports_json_schema  # "auto" becomes True/False after the first answer

    async def complete(self, messages: list[dict], *, temperature: float = 0.8, max_tokens: int = 1024,
                       schema: dict | None = None, schema_name: str = "reply") -> Reply:
        import openai

        kwargs: dict[str, Any] = {}
        structured = schema is not None and self.json_schema is not False
        if structured:
            kwargs["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": schema_name, "schema": schema, "strict": True}}
        try:
            resp = await self.client.chat.completions.create(
                model=self.config.model, messages=messages, temperature=temperature, max_tokens=max_tokens,
                **kwargs)
        except json.JSONDecodeError as e:  # a 200 whose JSON body ends early (a proxy or the server cut it)
            raise BadResponse(f"teacher {self.config.name!r} sent a JSON body that breaks off ({e.msg} at "
                              f"character {e.pos}); a proxy or the server cut the response") from None
        except openai.BadRequestError as e:
            if structured and self.config.supports_json_schema == "auto":
                self.json_schema = False  # this endpoint does not take JSON schema: plain text from now on
                return await self.complete(messages, temperature=temperature, max_tokens=max_tokens)
            raise TeacherError(f"teacher {self.config.name!r} refused the request: {e}") from None
        except openai.AuthenticationError:
            raise TeacherError(f"teacher {self.config.name!r} rejected the API key; check the variable "
                               f"{self.config.api_key_env or '(none set)'}") from None
        except openai.NotFoundError as e:
            raise TeacherError(f"teacher {self.config.name!r}: {e}. Is the model name {self.config.model!r} "
                               f"right for {self.config.base_url}?") from None
        reply = self._reply_of(resp, structured)
        if structured and self.json_schema == "auto":
            self.json_schema = True
        return reply

    def _reply_of(self, resp: Any, structured: bool) -> Reply:
        """The Reply in a response body, or BadResponse when the body is not a chat completion."""
        if isinstance(resp, str | bytes):  # the client hands over non-JSON bodies as they are
            kind = "an HTML page" if "<html" in str(resp[:2000]).lower() else "plain text"
            raise BadResponse(f"teacher {self.config.name!r} answered with {kind} (HTML or text, not JSON), not "
                              f"an OpenAI-compatible chat completion; check its base_url "
                              f"({self.config.base_url}: usually the API's address, ending in /v1)")
        try:
            choices = resp.choices
            if not choices:
                return Reply("", None, structured=structured, teacher=self.config.name)
            choice = choices[0]
            content = choice.message.content or ""
            finish = choice.finish_reason
            tokens = (resp.usage.completion_tokens if resp.usage else 0) or 0
            if not isinstance(content, str) or not isinstance(tokens, int):
                raise TypeError("content is not text")
        except (AttributeError, TypeError, IndexError, KeyError):
            raise BadResponse(f"teacher {self.config.name!r} answered with JSON that is not a chat completion "
                              f"(no choices[0].message.content); check its base_url ({self.config.base_url}) "
                              f"and that it serves the OpenAI chat API") from None
        return Reply(content, finish, tokens, structured, self.config.name)

    async def close(self) -> None:
        await self.client.close()


# ---- lenient JSON parsing ----------------------------------------------------------------------------

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


class Unparseable(ValueError):
    """No JSON value could be found in a reply."""


# At most this many "{"/"[" positions are tried as the start of the JSON value: each try is linear in the
# reply, so a brace-heavy reply costs O(MAX_STARTS x length), not O(length^2).
MAX_STARTS = 64


def extract_json(text: str) -> tuple[Any, bool]:
    """The JSON value in a reply: whole text, inside a code fence, or the first {...}/[...] with prose around
    it. A truncated array (max_tokens hit) yields its complete items. Returns (value, truncated).
    Linear in the reply's length (bounded tries); nesting too deep to parse counts as no JSON."""
    text = text.strip().lstrip("\ufeff")
    candidates = [text] + [m.group(1).strip() for m in _FENCE.finditer(text)]
    for cand in candidates:
        try:
            return json.loads(cand), False
        except (json.JSONDecodeError, RecursionError):
            pass
    dec = json.JSONDecoder()
    for m, _ in zip(re.finditer(r"[{\[]", text), range(MAX_STARTS)):
        i = m.start()
        try:
            value, _ = dec.raw_decode(text, i)
            return value, False
        except RecursionError:
            continue
        except json.JSONDecodeError as e:
            array_at = text.find("[", i, e.pos)
            if array_at >= 0:  # the value starting here got into an array before it broke off: truncated
                salvaged = _salvage_items(text, array_at)
                if salvaged:
                    return salvaged, True
    raise Unparseable(f"no JSON found in the reply ({len(text)} chars: {text[:80]!r})")


def _salvage_items(text: str, start: int) -> list:
    """Complete objects of the array at text[start] in a truncated reply: `{"samples": [{...}, {...}, {"instr`."""
    dec = json.JSONDecoder()
    items, i = [], start + 1
    while True:
        while i < len(text) and text[i] in " \t\r\n,":
            i += 1
        if i >= len(text) or text[i] != "{":
            return items
        try:
            value, i = dec.raw_decode(text, i)
        except (json.JSONDecodeError, RecursionError):
            return items
        items.append(value)


def items_of(value: Any, key: str) -> list:
    """The list of records in a parsed reply: {key: [...]}, any single list value, a bare list, or one object."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        if isinstance(value.get(key), list):
            return value[key]
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
        return [value]
    return []
