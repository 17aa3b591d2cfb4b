"""Every TrainConfig field is settable from the CLI and from the TUI form, with the same name and meaning."""

from __future__ import annotations

import click
import pytest

from tuitune.commands.train import config_from, train
from tuitune.core.training.config import DERIVED, ConfigError, TrainConfig
from tuitune.core.training.options import option_specs, parse
from tuitune.settings import load_settings
from tuitune.tui.app import make_app


def sample_value(spec) -> tuple[str, object]:
    """A valid value other than the default, as typed and as the config holds it."""
    if spec.kind == "choice":
        choice = next(c for c in reversed(spec.choices) if c != spec.default)
        return choice, choice
    if spec.kind == "bool":
        return ("false", False) if spec.default is True else ("true", True)
    if spec.kind == "int" and spec.choices:  # a number or a keyword: the keyword
        return spec.choices[-1], spec.choices[-1]
    if spec.kind == "int":
        return ("29600", 29600) if spec.name == "master_port" else ("2", 2) if spec.name == "nodes" else ("64", 64)
    if spec.kind == "float":
        return "0.5", 0.5
    if spec.kind == "list":
        return "q_proj,v_proj", ["q_proj", "v_proj"]
    return "/tmp/some-model", "/tmp/some-model"


SPECS = option_specs()


def test_specs_cover_every_field_but_the_derived_ones():
    assert {s.name for s in SPECS} | set(DERIVED) == set(TrainConfig.model_fields)
    assert all(s.help for s in SPECS)
    assert next(s for s in SPECS if s.name == "method").choices == ("lora", "qlora", "dora", "full", "dpo", "kto",
                                                                    "orpo", "pretrain")


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_every_field_is_a_cli_option(spec):
    typed, value = sample_value(spec)
    opt = next((p for p in train.params if spec.flag in p.opts), None)
    assert opt is not None, f"no {spec.flag} option"
    assert opt.help.startswith(spec.help)
    if spec.kind == "bool":
        args = [spec.flag if value else f"--no-{spec.flag[2:]}"]
    else:
        args = [spec.flag, typed]
    ctx = train.make_context("train", args)
    names = {s.name for s in SPECS}
    cfg = config_from(TrainConfig(), {k: v for k, v in ctx.params.items() if k in names}, ())
    expected = str(click.Path(resolve_path=True).convert(typed, None, None)) if spec.name == "data" else value
    assert getattr(cfg, spec.name) == expected
    # --set FIELD=VALUE reaches the same field
    assert getattr(config_from(TrainConfig(), {}, (f"{spec.name}={typed}",)), spec.name) == value


def test_cli_refuses_out_of_range_values_naming_the_field():
    for bad in ("batch_size=0", "micro_batch_size=0", "lora_r=-1", "learning_rate=-1", "warmup_ratio=5",
                "epochs=-1", "lora_dropout=2", "save_steps=0", "num_threads=-3", "lr_scheduler=nonsense",
                "grad_accum=0", "beta=-1", "max_steps=0", "lora_r=[1,2", "nosuchfield=1"):
        field = bad.split("=")[0]
        with pytest.raises(ConfigError, match=field):
            config_from(TrainConfig(), {}, (bad,))


async def test_every_field_is_a_form_field(tmp_path, home):
    from tuitune.tui.screens.train import UNSET, TrainScreen

    app = make_app(load_settings(project=tmp_path / "proj", home=home))
    async with app.run_test(size=(100, 40)) as pilot:
        screen = TrainScreen()
        await app.push_screen(screen)
        await pilot.pause()
        assert screen.config() == TrainConfig()  # untouched: the defaults, presets left to decide
        for spec in SPECS:
            typed, value = sample_value(spec)
            widget = screen.query_one(f"#opt-{spec.name}")
            label = widget.parent.query_one(".field-label")
            assert str(label.render()) == spec.name.replace("_", " ")
            if spec.kind == "bool":
                widget.value = "on" if value else "off"
            elif spec.name == "base":
                widget.value = next(v for _, v in widget._options if v != TrainConfig().base) \
                    if len(widget._options) > 1 else widget.value
                value = widget.value
            else:
                widget.value = typed
            await pilot.pause()
            assert getattr(screen.config(), spec.name) == value, spec.name
        optional_bool = next(s for s in SPECS if s.kind == "bool" and s.optional)
        screen.query_one(f"#opt-{optional_bool.name}").value = UNSET
        assert getattr(screen.config(), optional_bool.name) is None
        screen.query_one("#opt-warmup_ratio").value = "5"
        with pytest.raises(ConfigError, match="warmup_ratio"):
            screen.config()


def test_parse_names_the_field_and_the_expected_kind():
    with pytest.raises(ConfigError, match="epochs: 'two' is not a number"):
        parse("epochs", "two")
    with pytest.raises(ConfigError, match="merge: 'maybe' is not true or false"):
        parse("merge", "maybe")
    assert parse("epochs", "") is None and parse("target_modules", "[q_proj, v_proj]") == ["q_proj", "v_proj"]


def test_the_base_default_follows_tuitune_base_model(store, project, embedded_model, monkeypatch):
    """--help says where the base comes from, and an unset --base takes $TUITUNE_BASE_MODEL."""
    import json

    from click.testing import CliRunner

    from tuitune.cli import main
    from tuitune.core.data.samples import Sample

    base = next(p for p in train.params if "--base" in p.opts)
    assert "$TUITUNE_BASE_MODEL" in base.help
    store.add_samples([Sample(f"question {i}", f"answer {i}", status="accepted") for i in range(6)])
    monkeypatch.setenv("TUITUNE_BASE_MODEL", str(embedded_model))
    out = CliRunner().invoke(main, ["--project", str(project), "train", "--dry-run", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["config"]["base"] == str(embedded_model)
