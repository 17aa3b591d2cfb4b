"""The training worker: `python -m tuitune.core.training.worker RUN_DIR` (launched detached by jobs.launch).

Reads runs/<id>/config.yaml and data.jsonl, trains with TRL (SFTTrainer, DPOTrainer, KTOTrainer, ORPOTrainer)
and PEFT, writes events.jsonl as it goes, checkpoints into runs/<id>/checkpoints/, resumes from the last one if
present, saves the adapter to runs/<id>/adapter/, merges it into runs/<id>/merged/, runs the stop check, then the
steps after training (after.py: the engine parity check and the held-out verdict, which are evaluation's; named
there, not imported here). SIGTERM/SIGINT = stop: save a checkpoint at the end of the current step, then exit with
`stopped`.

Several GPUs: run it under `accelerate launch -m tuitune.core.training.worker RUN_DIR` (or
`torchrun --nproc_per_node N -m tuitune.core.training.worker RUN_DIR`); only rank 0 writes events and merges.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from tuitune.core.training import after, early_stop
from tuitune.core.training.config import PREFERENCE_METHODS, TrainConfig
from tuitune.core.training.events import EventWriter
from tuitune.core.training.gpu import precision
from tuitune.core.training.run_dir import RunDir

OOM_HINT = ("Out of memory. Lower micro_batch_size (records per forward pass; 1 uses the least memory and the "
            "optimizer still sees batch_size records per step), lower max_length, or use method qlora "
            "(4-bit base) or a smaller base model.")


class StopFlag:
    """Set by SIGTERM/SIGINT. The signals are blocked in every thread and taken by one waiting thread, which
    also learns who sent them (recorded in the `stopped` event)."""

    def __init__(self):
        self.requested = False
        self.by = ""

    def install(self) -> None:
        import threading

        sigs = {signal.SIGTERM, signal.SIGINT}
        signal.pthread_sigmask(signal.SIG_BLOCK, sigs)  # threads started later inherit the mask

        def waiter():
            while True:
                info = signal.sigwaitinfo(sigs)
                self.by = f"{signal.Signals(info.si_signo).name} from pid {info.si_pid} ({_cmdline(info.si_pid)})"
                self.requested = True

        threading.Thread(target=waiter, name="stop-signal", daemon=True).start()


def _cmdline(pid: int) -> str:
    import psutil

    try:
        return " ".join(psutil.Process(pid).cmdline())[:200]
    except (psutil.Error, OSError):  # the sender may be gone already; this is only a diagnostic
        return "?"


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    msg = str(exc).lower()
    return "out of memory" in msg or "can't allocate memory" in msg or "cannot allocate memory" in msg


# ---- model ----------------------------------------------------------------------------------------

def load_model(cfg: TrainConfig, cuda: bool):
    import torch
    from transformers import AutoModelForCausalLM

    from tuitune.core.training.gpu import load_dtype

    # A frozen base under an adapter loads in 16 bits on CUDA; trained weights stay fp32 masters (mixed precision).
    kw: dict = {"dtype": getattr(torch, load_dtype(cfg, cuda))}
    from tuitune.core.training.quant import bnb_config

    if (quant := bnb_config(cfg, cuda)) is not None:  # qlora: a 4-bit nf4 or 8-bit int8 base (config.quant)
        kw["quantization_config"] = quant
        kw["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))} if cuda else {"": "cpu"}
    if cfg.padding_free or cfg.packing:  # rows of several records: only correct with varlen flash-attention
        kw["attn_implementation"] = "flash_attention_2"
    model = AutoModelForCausalLM.from_pretrained(cfg.base_path, **kw)
    model.config.use_cache = False
    if cfg.peft_kind == "none":
        return model
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if cfg.peft_kind == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=bool(cfg.gradient_checkpointing))
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.target_modules, use_dora=cfg.peft_kind == "dora", task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def model_summary(model) -> dict:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    q = getattr(getattr(model, "config", None), "quantization_config", None)
    from tuitune.core.training.quant import quant_name

    quant = quant_name(q)
    return {"trainable_params": trainable, "total_params": total, "quantization": quant,
            "dtype": str(next(model.parameters()).dtype).replace("torch.", "")}


def common_args(cfg: TrainConfig, run_dir: Path, cuda: bool, n_train: int) -> dict:
    from tuitune.core.training.presets import total_steps

    # Whole warm-up steps, rounded down: a tiny run must not spend its first (or only) step at lr 0.
    # DDP: each of WORLD_SIZE ranks sees 1/WORLD_SIZE of the records, so the schedule counts the effective batch.
    world = int(os.environ.get("WORLD_SIZE", "1"))
    warmup = int(cfg.warmup_ratio * total_steps(cfg, max(1, -(-n_train // world))))
    # SFT runs micro_batch_size records per pass and accumulates up to batch_size; the preference trainers
    # need their whole batch at once (KTO's KL term pairs examples within it).
    micro = cfg.batch_size if cfg.method in PREFERENCE_METHODS else (cfg.micro_batch_size or cfg.batch_size)
    return dict(  # noqa: C408 - reads like the TrainingArguments call it feeds
        output_dir=str(RunDir(run_dir).checkpoints), per_device_train_batch_size=micro,
        per_device_eval_batch_size=micro, gradient_accumulation_steps=cfg.grad_accum * (cfg.batch_size // micro),
        num_train_epochs=cfg.epochs, max_steps=cfg.max_steps, learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler, warmup_steps=warmup, weight_decay=cfg.weight_decay,
        logging_steps=cfg.logging_steps, save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=2,
        report_to=["tensorboard"], use_cpu=not cuda, bf16=bool(cfg.bf16), fp16=bool(cfg.fp16),
        use_liger_kernel=cfg.use_liger_kernel,
        gradient_checkpointing=bool(cfg.gradient_checkpointing), seed=cfg.seed, dataloader_num_workers=0,
        disable_tqdm=True, include_num_input_tokens_seen="non_padding", eval_strategy="no",
        train_sampling_strategy="group_by_length" if cfg.group_by_length and micro > 1 else "random",
    )


def build_trainer(cfg: TrainConfig, run_dir: Path, records: list[dict], held: list[dict], tok, cuda: bool):
    from tuitune.core.training import data, sharding

    model = load_model(cfg, cuda)
    args = common_args(cfg, run_dir, cuda, len(records))
    # fsdp/zero2/zero3 over several ranks: the engine's TrainingArguments (run/fsdp.json, run/deepspeed.json)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    args.update(sharding.trainer_kwargs(cfg, RunDir(run_dir), cuda, list(getattr(base, "_no_split_modules", None)
                                                                         or [])))
    args.update(early_stop.trainer_args(cfg, len(held)))  # held-out loss plateau: stop, keep the best
    template = tok.chat_template
    if cfg.method in PREFERENCE_METHODS:
        from datasets import Dataset

        rows = data.kto_rows(records) if cfg.method == "kto" else records
        held_rows = (data.kto_rows(held) if cfg.method == "kto" else held) or None
        if cfg.method == "dpo":
            from trl import DPOConfig as Cfg
            from trl import DPOTrainer as Trainer
        elif cfg.method == "kto":
            from trl import KTOConfig as Cfg
            from trl import KTOTrainer as Trainer
        else:
            from trl.experimental.orpo import ORPOConfig as Cfg
            from trl.experimental.orpo import ORPOTrainer as Trainer
        # These trainers tokenize pairs themselves. KTO's KL estimate pairs each example with its neighbours in
        # a fixed-order batch, so it needs sequential sampling: shuffle the rows once (seeded) instead.
        args["train_sampling_strategy"] = "sequential" if cfg.method == "kto" else "random"
        if cfg.method == "kto":
            import random

            random.Random(cfg.seed).shuffle(rows)
        targs = Cfg(**args, max_length=cfg.max_length, beta=cfg.beta, remove_unused_columns=False)
        return Trainer(model=model, args=targs, train_dataset=Dataset.from_list(rows),
                       eval_dataset=Dataset.from_list(held_rows) if held_rows else None, processing_class=tok)
    from trl import SFTConfig, SFTTrainer

    if not cuda:  # logits only at trained positions; CUDA keeps TRL's fused, memory-bounded head
        from tuitune.core.training.lean_loss import sft_trainer_class

        SFTTrainer = sft_trainer_class()  # a drop-in subclass
    if cfg.method == "pretrain":
        train_tok = data.tokenize_pretrain(tok, records, cfg.max_length)
        eval_tok = None
    else:
        train_tok = data.tokenize_sft(tok, records, template)
        eval_tok = data.tokenize_sft(tok, held, template) if held else None
    targs = SFTConfig(**args, max_length=cfg.max_length, packing=cfg.packing, padding_free=cfg.padding_free,
                      length_column_name="length", dataset_num_proc=None)
    return SFTTrainer(model=model, args=targs, train_dataset=train_tok.to_dataset(),
                      eval_dataset=eval_tok.to_dataset() if eval_tok else None, processing_class=tok)


def make_callback(events: EventWriter, stop: StopFlag, t_start: float):
    from transformers import TrainerCallback

    class EventsCallback(TrainerCallback):
        def __init__(self):
            self.last_time = time.monotonic()
            self.last_tokens = 0
            self.first_step = None
            self.step_times: list[float] = []

        def on_train_begin(self, args, state, control, **kw):
            self.last_time = time.monotonic()
            self.last_tokens = state.num_input_tokens_seen
            self.first_step = state.global_step

        def on_step_end(self, args, state, control, **kw):
            # Every rank must stop at the same step (else the others hang in the next all-reduce): agree first.
            if agreed_stop(stop.requested):
                stop.requested = True
                control.should_save = True
                control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            if "loss" not in logs:
                return
            now = time.monotonic()
            dt = max(1e-6, now - self.last_time)
            tokens = state.num_input_tokens_seen - self.last_tokens
            steps_done = state.global_step - (self.first_step or 0)
            per_step = (now - t_start) / max(1, steps_done)
            extra = {k: v for k, v in logs.items() if isinstance(v, (int, float)) and k not in
                     ("loss", "learning_rate", "grad_norm", "epoch", "num_input_tokens_seen")}
            events.emit("step", step=state.global_step, max_steps=state.max_steps, epoch=round(state.epoch or 0, 4),
                        loss=logs.get("loss"), lr=logs.get("learning_rate"), grad_norm=logs.get("grad_norm"),
                        tokens=state.num_input_tokens_seen, tokens_per_second=round(tokens / dt, 2),
                        eta_seconds=round(per_step * max(0, state.max_steps - state.global_step), 1),
                        metrics=extra, **gpu_memory())
            self.last_time, self.last_tokens = now, state.num_input_tokens_seen

        def on_save(self, args, state, control, **kw):
            events.emit("checkpoint", step=state.global_step,
                        path=str(Path(args.output_dir) / f"checkpoint-{state.global_step}"))

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            events.emit("eval", step=state.global_step, **{k: v for k, v in (metrics or {}).items()})

    return EventsCallback()


def agreed_stop(local: bool) -> bool:
    """True on every rank when any rank was asked to stop (a MAX all-reduce of the flag); the flag itself alone."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return local
    import torch

    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    flag = torch.tensor([1 if local else 0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def gpu_memory() -> dict:
    """Peak allocated and reserved GPU memory of this process (GiB), for step events; {} on CPU."""
    import torch

    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return {}
    return {"gpu_peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "gpu_reserved_gib": round(torch.cuda.memory_reserved() / 2**30, 2)}


def run(run_dir: Path, after_steps: Sequence[str | Callable] = after.STEPS) -> int:
    """Train the run; `after_steps`: what runs once it is trained and merged (after.py)."""
    run_dir = Path(run_dir).resolve()
    main = is_main_process()
    events = EventWriter(run_dir, enabled=main)
    stop = StopFlag()
    stop.install()
    try:
        return _run(run_dir, events, stop, main, after_steps)
    except BaseException as e:  # the run must end with an event whatever happened
        if isinstance(e, SystemExit):
            raise
        oom = is_oom(e)
        traceback.print_exc()
        # Any rank's failure is the run's failure: every rank may write it (rank 0 alone writes the rest).
        EventWriter(run_dir).emit("failed", error=f"{type(e).__name__}: {e}", kind="oom" if oom else "error",
                                  rank=int(os.environ.get("RANK", "0")),
                                  hint=OOM_HINT if oom else "See worker.log in the run folder for the traceback.")
        return 1


def _run(run_dir: Path, events: EventWriter, stop: StopFlag, main: bool, after_steps) -> int:
    from tuitune.core.training import data
    from tuitune.core.training.presets import detect_hardware

    run = RunDir(run_dir)
    cfg = TrainConfig.load(run.config)
    import torch

    from tuitune.core.training import sharding

    hw = detect_hardware(cfg.device)
    hw.cuda = hw.cuda and torch.cuda.is_available()  # the description may be another machine's (TUITUNE_HARDWARE)
    sharding.prepare(cfg, hw.cuda)  # DS_ACCELERATOR / the CPU-rank FSDP shim, before transformers and TRL load
    threads = cfg.num_threads or int(os.environ.get("TUITUNE_TRAIN_THREADS", "0") or 0)  # jobs' thread budget
    if threads:
        torch.set_num_threads(threads)
    os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(run.tensorboard))
    resume_from = run.last_checkpoint()
    events.emit("resumed" if resume_from else "started", pid=os.getpid(), method=cfg.method, base=cfg.base,
                device=hw.kind, gpus=hw.gpus, checkpoint=str(resume_from) if resume_from else None)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(cfg.base_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if tok.chat_template and main and not run.chat_template.exists():
        run.chat_template.write_text(tok.chat_template, encoding="utf-8")
    records = data.read_records(cfg.data)
    train, held = data.split_holdout(records, cfg.holdout or 0, cfg.seed)
    trainer = build_trainer(cfg, run_dir, train, held, tok, hw.cuda)
    if early_stop.callback(cfg, len(held)) is not None:
        trainer.add_callback(early_stop.callback(cfg, len(held)))
    events.emit("model", **model_summary(trainer.model), train_records=len(train), held_out=len(held),
                # what the Trainer runs (DeepSpeed on CPU ranks turns bf16 off)
                precision=precision(cfg.updated(bf16=trainer.args.bf16, fp16=trainer.args.fp16), hw.cuda),
                records_per_pass=trainer.args.per_device_train_batch_size,
                attention=getattr(getattr(trainer.model, "config", None), "_attn_implementation", None),
                gpus=int(os.environ.get("WORLD_SIZE", "1")) if hw.cuda else 0,
                effective_batch=cfg.batch_size * cfg.grad_accum * int(os.environ.get("WORLD_SIZE", "1")),
                passes_per_step=trainer.args.gradient_accumulation_steps,
                **sharding.what_ran(trainer), distributed_requested=cfg.distributed,
                distributed_notes=sharding.notes(cfg, hw.cuda))
    t_start = time.monotonic()
    trainer.add_callback(make_callback(events, stop, t_start))
    if stop.requested:
        events.emit("stopped", step=0, checkpoint=None, reason="stop requested before training started",
                    signal=stop.by)
        return 0
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    step = trainer.state.global_step
    if stop.requested and step < trainer.state.max_steps:
        ck = run.last_checkpoint()
        events.emit("stopped", step=step, checkpoint=str(ck) if ck else None,
                    reason="stop requested; the run can be resumed from this checkpoint", signal=stop.by)
        return 0
    if held:
        trainer.evaluate()
    target = run.merged if cfg.peft_kind == "none" else run.adapter
    if sharding.active(cfg, hw.cuda):
        # Sharded weights: every rank takes part in gathering the whole model (adapter) and rank 0 writes it.
        trainer.save_model(str(target))
    if not main:
        return 0
    if sharding.active(cfg, hw.cuda):
        pass  # saved above, by all ranks
    elif cfg.peft_kind == "none":
        trainer.save_model(str(run.merged))
    else:
        trainer.model.save_pretrained(run.adapter)
    tok.save_pretrained(target)
    del trainer
    if sharding.active(cfg, hw.cuda):
        sharding.after_save()
    metrics = {k: v for k, v in (result.metrics or {}).items() if isinstance(v, (int, float))}
    if cfg.merge:
        _merge_and_check(cfg, run, events, records, held)
    from tuitune.settings import Settings

    # The worker is a process entry of its own: its settings come from the environment its launcher gave it
    # (TUITUNE_HOME, see jobs._placement), built once here and passed to the steps after training.
    after.run_steps(after.Trained(run, cfg, events, records, train, held, hw.cuda, Settings()), after_steps)
    events.emit("done", step=step, metrics=metrics,
                adapter=str(run.adapter) if cfg.peft_kind != "none" else None,
                merged=str(run.merged) if run.has_merged() else None)
    return 0


def _merge_and_check(cfg: TrainConfig, run: RunDir, events: EventWriter, records: list[dict],
                     held: list[dict]) -> None:
    from tuitune.core.training.merge import check_stops, check_template, merge_run

    t0 = time.monotonic()
    if cfg.peft_kind != "none":  # a full fine-tune's model is already in merged/
        events.emit("phase", phase="merging", message="merging the adapter into merged/")
    merged = merge_run(run.path)
    events.emit("merged", path=str(merged), seconds=round(time.monotonic() - t0, 1))
    if run.chat_template.exists():
        events.emit("check", **check_template(merged, run.chat_template.read_text(encoding="utf-8")))
    if cfg.check_prompts <= 0 or cfg.method == "pretrain":
        return
    source = held or records
    prompts = []
    for r in source[: cfg.check_prompts]:
        msgs = r["prompt"] if "prompt" in r else r["messages"]
        if msgs and msgs[-1]["role"] == "assistant":
            msgs = msgs[:-1]
        prompts.append(msgs)
    budget = cfg.check_max_new_tokens or cfg.max_length
    events.emit("phase", phase="checking", message=f"checking that {len(prompts)} answers stop")
    res = check_stops(merged, prompts, budget)
    res["held_out"] = bool(held)
    events.emit("check", **res)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m tuitune.core.training.worker RUN_DIR", file=sys.stderr)
        return 2
    return run(Path(argv[0]))


if __name__ == "__main__":
    sys.exit(main())
