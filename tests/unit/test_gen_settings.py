"""The chat screen's answer settings as typed: parsed into GenParams, or refused with the field named."""

from __future__ import annotations

import pytest

from tuitune.core.serving.chat import GenParams
from tuitune.core.serving.gen_settings import form_values, params_from_form


def test_typed_values_become_params_and_round_trip():
    current = GenParams(response_format={"type": "json_object"})
    typed = {"temperature": " 0 ", "top_p": "0.9", "max_tokens": "64", "seed": "7", "stop": "\\n\\n | ###"}
    p = params_from_form(typed, current)
    assert (p.temperature, p.top_p, p.max_tokens, p.seed, p.stop) == (0.0, 0.9, 64, 7, ["\n\n", "###"])
    assert p.response_format == {"type": "json_object"}  # what the dialog does not show is kept
    assert params_from_form(form_values(p), current) == p


def test_empty_seed_and_stop_mean_none():
    p = params_from_form({**form_values(GenParams(seed=3, stop=["x"])), "seed": "", "stop": " | "}, GenParams())
    assert p.seed is None and p.stop is None


@pytest.mark.parametrize(("field", "typed", "names"), [
    ("temperature", "hot", "Temperature"),
    ("temperature", "2.5", "Temperature"),
    ("top_p", "0", "Top-p"),
    ("max_tokens", "0", "Max tokens per answer"),
    ("max_tokens", "1.5", "Max tokens per answer"),
    ("seed", "abc", "Seed"),
])
def test_bad_values_name_the_field_and_what_was_typed(field, typed, names):
    values = {**form_values(GenParams()), field: typed}
    with pytest.raises(ValueError, match=names) as e:
        params_from_form(values, GenParams())
    assert repr(typed) in str(e.value)
