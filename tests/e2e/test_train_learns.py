"""e2e: a handful of records is actually learned with the CPU defaults (one record per pass, loss only at the
answer, bf16 where native): the training loss falls steeply and the tuned model answers a training prompt with
its trained answer."""

from __future__ import annotations

import pytest

from tuitune.core.data.samples import Sample
from tuitune.core.data.store import Store
from tuitune.core.training import jobs
from tuitune.core.training.config import TrainConfig
from tuitune.settings import load_settings

pytestmark = pytest.mark.e2e

FACTS = [
    ("Which port does the Zorblax gateway listen on?", "The Zorblax gateway listens on port 7431."),
    ("Who maintains the Zorblax gateway?", "The Zorblax gateway is maintained by the Quill team."),
    ("What language is the Zorblax gateway written in?", "The Zorblax gateway is written in Rust."),
    ("Where are Zorblax gateway logs stored?", "Zorblax gateway logs are stored in /var/log/zorblax."),
]


def test_a_few_records_are_learned(tmp_path, embedded_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with Store.open(tmp_path) as store:
        store.add_samples([Sample(instruction=q, output=a, origin="seed", status="accepted") for q, a in FACTS])
    run_id = jobs.launch(load_settings(project=tmp_path), TrainConfig(epochs=10, batch_size=4, lora_r=16, learning_rate=1e-3,
                                               warmup_ratio=0.0, lr_scheduler="constant", check_prompts=0))
    d = tmp_path / "runs" / run_id
    info = jobs.wait(d, timeout=900, poll=2)
    assert info.status == "done", (d / "worker.log").read_text()[-3000:]
    losses = [e["loss"] for e in jobs.read_events(d)[0] if e["event"] == "step"]
    assert len(losses) == 10
    assert sum(losses[-2:]) / 2 < 0.2 * losses[0], losses  # memorised, not merely nudged

    tok = AutoTokenizer.from_pretrained(d / "merged")
    model = AutoModelForCausalLM.from_pretrained(d / "merged")
    enc = tok.apply_chat_template([{"role": "user", "content": FACTS[0][0]}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**enc, max_new_tokens=24, do_sample=False)
    assert "7431" in tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
