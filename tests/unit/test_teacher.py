"""Teacher configuration (teachers.yaml, keys only by variable name) and lenient JSON parsing of replies."""

from __future__ import annotations

import pytest

from tuitune.core.synth.teacher import (
    EMBEDDED,
    TeacherConfig,
    TeacherError,
    Unparseable,
    extract_json,
    get_teacher,
    items_of,
    load_teachers,
    save_teacher,
    teachers_path,
)
from tuitune.settings import Settings


@pytest.fixture
def settings(tmp_path, monkeypatch):
    for var in ("TUITUNE_TEACHER_BASE_URL", "TUITUNE_TEACHER_MODEL"):
        monkeypatch.delenv(var, raising=False)
    return Settings(home=tmp_path / "home", project=tmp_path / "proj")


def test_default_teacher_is_embedded(settings):
    cfg = get_teacher(settings)
    assert cfg.name == EMBEDDED and cfg.embedded and cfg.base_url == ""


def test_saved_teacher_round_trips_without_the_key(settings, monkeypatch):
    monkeypatch.setenv("MY_TEACHER_KEY", "sk-secret-123")
    cfg = TeacherConfig("deepseek", "https://example.invalid/v1", "deepseek-chat", "MY_TEACHER_KEY",
                        supports_json_schema=False)
    path = save_teacher(settings, cfg)
    text = path.read_text()
    assert "sk-secret" not in text and "MY_TEACHER_KEY" in text
    loaded = get_teacher(settings, "deepseek")
    assert (loaded.base_url, loaded.model, loaded.supports_json_schema) == (cfg.base_url, cfg.model, False)
    assert loaded.resolve_key() == "sk-secret-123"
    assert "sk-secret" not in repr(loaded) and "api_key" not in loaded.public()


def test_missing_key_variable_says_what_to_do(settings, monkeypatch):
    monkeypatch.delenv("NOPE_KEY", raising=False)
    cfg = TeacherConfig("x", "http://h/v1", "m", "NOPE_KEY")
    with pytest.raises(TeacherError, match="export NOPE_KEY"):
        cfg.resolve_key()


def test_teachers_yaml_refuses_keys_and_unknown_fields(settings):
    path = teachers_path(settings)
    path.parent.mkdir(parents=True)
    path.write_text("teachers:\n  t:\n    base_url: http://h/v1\n    model: m\n    api_key: sk-1\n")
    with pytest.raises(TeacherError, match="api_key_env"):
        load_teachers(settings)
    path.write_text("teachers:\n  t:\n    base_url: http://h/v1\n    model: m\n    colour: red\n")
    with pytest.raises(TeacherError, match="unknown fields"):
        load_teachers(settings)
    path.write_text("teachers:\n  t:\n    model: m\n")
    with pytest.raises(TeacherError, match="base_url and model"):
        load_teachers(settings)


def test_unknown_teacher_lists_known_ones(settings):
    with pytest.raises(TeacherError, match="embedded"):
        get_teacher(settings, "nope")


def test_settings_endpoint_becomes_the_default(tmp_path):
    s = Settings(home=tmp_path, teacher_base_url="http://h:1/v1", teacher_model="qwen", teacher_api_key_env="K")
    cfg = get_teacher(s)
    assert (cfg.name, cfg.base_url, cfg.model, cfg.api_key_env) == ("default", "http://h:1/v1", "qwen", "K")


@pytest.mark.parametrize("text", [
    '{"samples": [{"instruction": "a", "output": "b"}]}',
    '```json\n{"samples": [{"instruction": "a", "output": "b"}]}\n```',
    'Sure! Here you go:\n{"samples": [{"instruction": "a", "output": "b"}]}\nHope it helps {:',
    'Here: ```\n[{"instruction": "a", "output": "b"}]\n``` done',
    '\ufeff  [{"instruction": "a", "output": "b"}]  ',
])
def test_extract_json_finds_the_value(text):
    value, truncated = extract_json(text)
    assert not truncated
    assert items_of(value, "samples") == [{"instruction": "a", "output": "b"}]


def test_truncated_array_keeps_complete_items():
    text = '{"samples": [{"instruction": "a", "output": "b"}, {"instruction": "c", "output": "d"}, {"instru'
    value, truncated = extract_json(text)
    assert truncated and [i["instruction"] for i in value] == ["a", "c"]


def test_chinese_survives_parsing():
    value, _ = extract_json('好的：{"samples": [{"instruction": "高血压吃什么？", "output": "少盐。"}]}')
    assert value["samples"][0]["instruction"] == "高血压吃什么？"


@pytest.mark.parametrize("text", ["", "I cannot do that.", '{"samples": [{"instr', "[[[", "{}}{"])
def test_unparseable(text):
    if text == "{}}{":  # a bare {} is valid JSON: parseable, but holds no records
        value, _ = extract_json(text)
        assert items_of(value, "samples") == [{}]
        return
    with pytest.raises(Unparseable):
        extract_json(text)


def test_items_of_shapes():
    assert items_of({"samples": [1, 2]}, "samples") == [1, 2]
    assert items_of({"data": [1]}, "samples") == [1]  # a single list under another key
    assert items_of({"instruction": "a"}, "samples") == [{"instruction": "a"}]  # one object
    assert items_of("text", "samples") == []


@pytest.mark.parametrize("text", ["{" * 200_000, "[" * 200_000, '{"a": ' * 50_000, "x {y} " * 40_000,
                                  '[{"a": "' + "b" * 200_000, "{[" * 100_000])
def test_extract_json_is_linear_on_hostile_replies(text):
    """Brace-heavy or deeply nested replies of 200k characters: an answer (Unparseable) in well under a second,
    never a RecursionError (before: 30-50 s per reply, inside the event loop)."""
    import time

    t0 = time.perf_counter()
    with pytest.raises(Unparseable):
        extract_json(text)
    assert time.perf_counter() - t0 < 1.0


def test_json_after_prose_with_many_braces_is_still_found():
    text = "Use {name} and {value} in templates. " * 5 + '{"samples": [{"instruction": "a", "output": "b"}]}'
    value, truncated = extract_json(text)
    assert not truncated and items_of(value, "samples") == [{"instruction": "a", "output": "b"}]
