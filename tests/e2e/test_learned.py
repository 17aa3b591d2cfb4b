"""e2e: a small real run with `--eval` -> the worker compares base, few-shot and tuned on the held-out records
-> report.json with three contenders and a verdict, the `verdict` event in `tuitune runs --json`, and the
verdict on the run's TUI card (Pilot). A handful of steps on short records (training is ~6 s/step here)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

VERDICTS = {"tuned_wins", "memorised", "few_shot_enough", "no_gain", "inconclusive"}


def _cli(project, home, *args, timeout=1500):
    import os

    env = {**os.environ, "TUITUNE_HOME": str(home), "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", "tuitune.cli", "--project", str(project), *args], check=False,
                          capture_output=True, text=True, timeout=timeout, env=env)


async def test_small_run_with_eval_records_a_verdict_on_three_contenders(tmp_path, home, real_fixtures):
    from textual.widgets import DataTable

    from tuitune.settings import load_settings
    from tuitune.tui.app import make_app
    from tuitune.tui.widgets.verdict import VerdictView

    rows = json.loads((real_fixtures / "llamafactory_identity.json").read_text(encoding="utf-8"))
    english = [r for r in rows if r["instruction"].isascii()][:26]
    data = tmp_path / "identity.json"
    data.write_text(json.dumps(english, ensure_ascii=False), encoding="utf-8")
    project = tmp_path / "proj"
    project.mkdir()
    # 20 training records, 6 held out; 4 steps with an evaluation of the held-out loss every 2 (early stopping on)
    out = _cli(project, home, "train", "--data", str(data), "--eval", "--holdout", "6", "--max-steps", "4",
               "--batch-size", "4", "--learning-rate", "1e-3", "--save-steps", "2", "--early-stopping-patience", "2",
               "--check-prompts", "1", "--foreground")
    run_id = out.stdout.split()[0] if out.stdout.strip() else ""
    log = (project / "runs" / run_id / "worker.log") if run_id else None
    assert out.returncode == 0, (out.stderr[-2000:], log.read_text()[-4000:] if log and log.exists() else "")
    run = project / "runs" / run_id
    events = [json.loads(line) for line in (run / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds.index("verdict") < kinds.index("done") and kinds.count("verdict") == 1
    # after the last step the events say what the worker does (the card and `runs watch` show it)
    phases = [e["phase"] for e in events if e["event"] == "phase"]
    assert phases.index("merging") < phases.index("checking") < phases.index("evaluating")
    last_step = max(i for i, k in enumerate(kinds) if k == "step")
    assert kinds.index("phase") > last_step
    assert any("answers" in e["message"] for e in events if e.get("phase") == "evaluating"), "no answer counts"
    assert sum(e["event"] == "eval" for e in events) >= 2  # held-out loss during training, and at the end

    # generated in bf16 only where this CPU was measured to decode faster in it (the probe's cache in the home)
    from tuitune.core.training.bf16_probe import CACHE_FILE, MIN_SPEEDUP
    from tuitune.core.training.presets import cpu_has_native_bf16

    precision = next(e for e in events if e["event"] == "verdict")["precision"]
    if cpu_has_native_bf16():
        cache = json.loads((home / CACHE_FILE).read_text(encoding="utf-8"))
        decode = [v["speedup"] for k, v in cache.items() if k.endswith("| decode")]
        assert len(decode) == 1 and precision == ("bf16" if decode[0] >= MIN_SPEEDUP else "fp32")
    else:
        assert precision == "fp32"

    report = json.loads((run / "eval" / "report.json").read_text(encoding="utf-8"))
    assert set(report["contenders"]) == {"base", "few_shot", "tuned"} and report["n"] == 6
    k = report["few_shot"]["k"]
    assert 1 <= k <= 5 and len(report["few_shot"]["examples"]) == k
    held_prompts = {it["prompt"] for it in report["items"]}
    assert held_prompts.isdisjoint(e["prompt"] for e in report["few_shot"]["examples"])  # shots are training records
    for item in report["items"]:
        assert len(item["outputs"]) == 3 and all(isinstance(o, str) for o in item["outputs"].values())
    assert report["train_items"] and report["contenders"]["tuned"]["train_chrf"] is not None
    assert report["verdict"]["code"] in VERDICTS and report["verdict"]["thresholds"]["min_gain"] > 0
    for c in report["contenders"].values():
        assert {"bleu", "chrf", "rougeL", "exact", "contains"} <= set(c)

    listed = _cli(project, home, "runs", "--json", timeout=120)
    assert listed.returncode == 0, listed.stderr
    info = next(r for r in json.loads(listed.stdout) if r["id"] == run_id)
    assert info["status"] == "done"
    verdict = info["verdict"]
    assert verdict["verdict"] == report["verdict"]["code"] and verdict["summary"] == report["verdict"]["text"]
    assert verdict["report"] == "eval/report.json" and set(verdict["contenders"]) == {"base", "few_shot", "tuned"}
    assert verdict["contenders"]["tuned"]["chrf"] == report["contenders"]["tuned"]["chrf"]

    app = make_app(load_settings(project=project, home=home))
    async with app.run_test(size=(120, 40)) as pilot:
        app.screen.follow_run(run_id)
        await pilot.pause(1.5)
        view = app.screen.query_one(f"#run-{run_id}").query_one(VerdictView)
        table = view.query_one(DataTable)
        assert [str(table.get_row_at(i)[0]) for i in range(table.row_count)] == ["base", "few-shot", "tuned"]
        assert str(table.get_row_at(2)[1]) == f"{verdict['contenders']['tuned']['chrf']:.1f}"
