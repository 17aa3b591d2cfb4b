"""Generation settings as a person types them (the chat screen's settings dialog): checked, with what to fix.

Stop strings are separated by `|`; `\\n` in them means a newline (e.g. `\\n\\n | ###`).
"""

from __future__ import annotations

from dataclasses import replace

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tuitune.core.serving.chat import GenParams

# field -> the label the dialog shows (also used in error messages, so they name what the person sees)
LABELS: dict[str, str] = {
    "temperature": "Temperature (0 = greedy: the same prompt gets the same answer; up to 2)",
    "top_p": "Top-p (nucleus sampling, 0-1]",
    "max_tokens": "Max tokens per answer",
    "seed": "Seed (empty: random; a number makes sampled answers repeatable)",
    "stop": "Stop strings, separated by | (\\n for a newline; empty: the model's own end)",
}


class _Checked(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(ge=0, le=2)
    top_p: float = Field(gt=0, le=1)
    max_tokens: int = Field(ge=1, le=32768)
    seed: int | None = None
    stop: list[str] | None = None


def form_values(p: GenParams) -> dict[str, str]:
    """The text each field of the dialog starts with."""
    return {"temperature": f"{p.temperature:g}", "top_p": f"{p.top_p:g}", "max_tokens": str(p.max_tokens),
            "seed": "" if p.seed is None else str(p.seed),
            "stop": " | ".join(s.replace("\n", "\\n") for s in p.stop or [])}


def params_from_form(values: dict[str, str], current: GenParams) -> GenParams:
    """`current` with the typed values; ValueError names the field and says what it accepts."""
    raw = {k: v.strip() for k, v in values.items()}
    data: dict = {k: raw.get(k, "") for k in ("temperature", "top_p", "max_tokens")}
    data["seed"] = raw.get("seed") or None
    stops = [s.strip().replace("\\n", "\n") for s in raw.get("stop", "").split("|")]
    data["stop"] = [s for s in stops if s] or None
    try:
        checked = _Checked.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        field = str(err["loc"][0])
        typed = raw.get(field, "")
        raise ValueError(f"{LABELS[field].split(' (')[0]}: {err['msg'].lower()} (typed: {typed!r})") from None
    return replace(current, **checked.model_dump())
