"""engine_config: the FSDP and DeepSpeed config dicts for each choice, with and without offload; DeepSpeed's own
parser takes the generated config once the Trainer's "auto" fill ran; transformers' TrainingArguments takes the
fsdp dict; write() puts one file in the run folder (none for ddp)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tuitune.core.training import engine_config
from tuitune.core.training.config import TrainConfig
from tuitune.core.training.run_dir import RunDir


def cfg(**kw) -> TrainConfig:
    return TrainConfig(base="smollm2-135m-instruct", base_path="/nonexistent", data="/nonexistent", **kw)


@pytest.mark.parametrize("offload", [False, True])
def test_fsdp_dict(offload):
    d = engine_config.fsdp_config(cfg(distributed="fsdp", offload=offload), ["LlamaDecoderLayer", "LlamaDecoderLayer"])
    assert d["version"] == 2 and d["reshard_after_forward"] is True
    assert d["transformer_layer_cls_to_wrap"] == ["LlamaDecoderLayer"]
    assert d["state_dict_type"] == "FULL_STATE_DICT" and d["cpu_offload"] is offload


@pytest.mark.parametrize("choice", ["zero2", "zero3"])
@pytest.mark.parametrize("offload", [False, True])
def test_deepspeed_dict(choice, offload):
    d = engine_config.deepspeed_config(cfg(distributed=choice, offload=offload))
    zero = d["zero_optimization"]
    assert zero["stage"] == int(choice[-1])
    assert "train_batch_size" not in d  # the Trainer's fill counts one rank on DeepSpeed's CPU accelerator
    assert d["bf16"] == {"enabled": "auto"} and d["train_micro_batch_size_per_gpu"] == "auto"
    assert zero.get("stage3_gather_16bit_weights_on_model_save", False) is (choice == "zero3")
    assert ("offload_optimizer" in zero) is offload
    assert ("offload_param" in zero) is (offload and choice == "zero3")
    assert ("optimizer" in d) is offload


def test_deepspeed_refuses_other_choices():
    with pytest.raises(ValueError, match="not zero2 or zero3"):
        engine_config.deepspeed_config(cfg(distributed="fsdp"))


def _trainer_args(**kw):
    # the TrainingArguments fields the Trainer's fill reads
    base = dict(world_size=2, per_device_train_batch_size=2,  # noqa: C408
                gradient_accumulation_steps=3, max_grad_norm=1.0,
                learning_rate=1e-4, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, weight_decay=0.0,
                save_on_each_node=False, fp16=False, fp16_full_eval=False, bf16=False, bf16_full_eval=False,
                fp16_backend="auto", fp16_opt_level="O1", half_precision_backend="auto", lr_scheduler_type="linear",
                warmup_steps=0, warmup_ratio=0.0)
    base.update(kw)
    return SimpleNamespace(**base, get_warmup_steps=lambda n: 0)


@pytest.mark.parametrize("choice", ["zero2", "zero3"])
@pytest.mark.parametrize("offload", [False, True])
def test_deepspeed_parser_accepts_it(choice, offload):
    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    hf = HfTrainerDeepSpeedConfig(engine_config.deepspeed_config(cfg(distributed=choice, offload=offload)))
    args = _trainer_args()
    hf.trainer_config_process(args)  # the Trainer's own "auto" fill
    hf.trainer_config_finalize(args, SimpleNamespace(config=SimpleNamespace(hidden_size=576)), 10)
    assert "auto" not in json.dumps(hf.config)
    ds = DeepSpeedConfig(hf.config)
    assert ds.zero_optimization_stage == int(choice[-1])
    assert ds.train_micro_batch_size_per_gpu == 2 and ds.gradient_accumulation_steps == 3
    assert (ds.zero_config.offload_optimizer is not None) is offload


def test_training_arguments_accept_fsdp_dict(tmp_path):
    from transformers import TrainingArguments

    body = engine_config.fsdp_config(cfg(distributed="fsdp"), ["LlamaDecoderLayer"])
    try:
        args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], fsdp=True, fsdp_config=body)
    except ValueError as e:  # one process: transformers accepts the dict and then refuses single-process FSDP
        assert "distributed" in str(e), e
        return
    assert args.fsdp_config["transformer_layer_cls_to_wrap"] == ["LlamaDecoderLayer"]


def test_write(tmp_path):
    run = RunDir(tmp_path)
    assert engine_config.write(run, cfg(distributed="ddp"), []) == []
    assert engine_config.write(run, cfg(distributed="fsdp"), ["LlamaDecoderLayer"]) == [run.fsdp_config]
    assert json.loads(run.fsdp_config.read_text())["version"] == 2
    assert engine_config.write(run, cfg(distributed="zero3"), []) == [run.deepspeed_config]
    assert json.loads(run.deepspeed_config.read_text())["zero_optimization"]["stage"] == 3
