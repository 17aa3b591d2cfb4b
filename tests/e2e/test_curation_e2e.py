"""Curation at scale on the real embedded model (the run's shared vLLM server): the judge scores real samples,
`judge --agreement --json` matches a hand computation over scripted review decisions, a bulk accept is undone in
one step with nothing else changed; a round through vLLM's real offline batch runner; a round over two real vLLM
endpoints where one is stopped mid-round."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from tuitune.cli import main
from tuitune.core.data.samples import Sample
from tuitune.core.data.store import Store

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def _cli(project, home, *args):
    r = CliRunner().invoke(main, ["--project", str(project), *args], env={"TUITUNE_HOME": str(home)})
    return r


def _teachers_yaml(home, srv, monkeypatch):
    monkeypatch.setenv("TUITUNE_E2E_KEY", srv.api_key)
    (home / "teachers.yaml").write_text(
        f"teachers:\n  local:\n    base_url: {srv.base_url}\n    model: {srv.model_names[0]}\n"
        f"    api_key_env: TUITUNE_E2E_KEY\n    supports_json_schema: true\n    timeout: 300\n")


def _hand_agreement(pairs):
    """Cohen's kappa, agreement and precision at each threshold, computed here from the definitions."""
    best, best_acc = None, -1.0
    for t in range(2, 6):
        acc = sum((s >= t) == a for s, a in pairs) / len(pairs)
        if acc > best_acc:
            best, best_acc = t, acc
    aa = sum(s >= best and a for s, a in pairs)
    ar = sum(s >= best and not a for s, a in pairs)
    ra = sum(s < best and a for s, a in pairs)
    rr = sum(s < best and not a for s, a in pairs)
    n = len(pairs)
    po = (aa + rr) / n
    pe = ((aa + ar) / n) * ((aa + ra) / n) + ((ra + rr) / n) * ((ar + rr) / n)
    kappa = None if pe == 1 else (po - pe) / (1 - pe)
    prec = {}
    for t in range(1, 6):
        sel = [a for s, a in pairs if s >= t]
        prec[t] = (sum(sel), len(sel))
    return best, best_acc, {"accept_accept": aa, "accept_reject": ar, "reject_accept": ra, "reject_reject": rr}, \
        kappa, prec


def test_judge_agreement_and_bulk_undo(vllm_embedded, project, home, real_fixtures, monkeypatch, tmp_path):
    _teachers_yaml(home, vllm_embedded, monkeypatch)
    records = json.loads((real_fixtures / "llamafactory_alpaca_en_demo.json").read_text(encoding="utf-8"))[:40]
    data = tmp_path / "pending.json"
    data.write_text(json.dumps(records))
    assert _cli(project, home, "init", "--description", "Follow the user's instruction helpfully.").exit_code == 0
    assert _cli(project, home, "import", str(data), "--as", "pending").exit_code == 0

    r = _cli(project, home, "judge", "--teacher", "local", "--concurrency", "8", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output.strip().splitlines()[-1])
    assert res["total"] == 40 and res["judged"] == 40, res

    listed = [json.loads(x) for x in _cli(project, home, "review", "--list", "--json", "--sort", "score")
              .output.splitlines()]
    assert len(listed) == 40 and all(1 <= x["judge"]["score"] <= 5 for x in listed)
    assert [x["judge"]["score"] for x in listed] == sorted(x["judge"]["score"] for x in listed)  # worst first
    assert all(x["judge"]["judge"] == f"local/{vllm_embedded.model_names[0]}" and "judge_sample.md.j2@"
               in x["judge"]["rubric"] for x in listed)

    asyncio.run(_review_screen_sorts_by_score(project, home, {x["id"]: x["judge"]["score"] for x in listed}))

    # scripted decisions on 33 samples: the 3 lowest-scored are rejected, the other 30 accepted; 7 stay pending
    by_score = sorted(listed, key=lambda x: (x["judge"]["score"], x["id"]))
    decided = by_score[:33]
    for x in decided[:3]:
        assert _cli(project, home, "review", "--reject", str(x["id"]), "--reason", "too weak").exit_code == 0
    for x in decided[3:]:
        assert _cli(project, home, "review", "--accept", str(x["id"])).exit_code == 0
    pairs = [(x["judge"]["score"], i >= 3) for i, x in enumerate(decided)]

    agr = json.loads(_cli(project, home, "judge", "--agreement", "--json", "--min-precision", "0.7").output)
    best, acc, cells, kappa, prec = _hand_agreement(pairs)
    assert agr["n"] == 33 and agr["n_accepted"] == 30 and agr["enough"] is True
    assert agr["best_threshold"] == best and agr["agreement"] == pytest.approx(acc)
    assert agr["confusion"] == cells
    assert (agr["kappa"] is None) == (kappa is None or cells["accept_accept"] + cells["accept_reject"] in (0, 33))
    if agr["kappa"] is not None:
        assert agr["kappa"] == pytest.approx(kappa)
    for t, (k, n) in prec.items():
        p = agr["precision_accept"][str(t)]
        assert (p["k"], p["n"]) == (k, n)
        if n:
            assert p["precision"] == pytest.approx(k / n)
    offers = [o for o in agr["offers"] if o["action"] == "accept"]
    assert offers, agr  # 30 of 33 accepted at T=1: the Wilson lower bound is 0.76, above 0.7

    with Store.open(project) as st:
        before = {s.id: s for s in st.samples()}
    r = _cli(project, home, "judge", "--bulk", "accept", "--min-precision", "0.7", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    pending = [x for x in by_score[33:]]
    chosen = {x["id"] for x in pending if x["judge"]["score"] >= out["threshold"]}
    assert out["changed"] == len(chosen) > 0
    with Store.open(project) as st:
        after = {s.id: s for s in st.samples()}
    assert {i for i in after if after[i].status != before[i].status} == chosen
    assert all(after[i].decided_by == "judge" and after[i].status == "accepted" for i in chosen)

    assert _cli(project, home, "review", "--undo").exit_code == 0  # ONE undo takes the whole bulk action back
    with Store.open(project) as st:
        undone = {s.id: s for s in st.samples()}
    strip = lambda s: s.with_(updated_at="")
    assert {i: strip(s) for i, s in undone.items()} == {i: strip(s) for i, s in before.items()}


async def _review_screen_sorts_by_score(project, home, scores):
    """The review screen (Pilot) on the judged project: every row shows its real score; `w` sorts worst first."""
    from tuitune.settings import load_settings
    from tuitune.tui.app import make_app
    from tuitune.tui.screens.review import ReviewScreen

    app = make_app(load_settings(project=project, home=home))
    with Store.open(project) as st:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = ReviewScreen(st)
            app.push_screen(screen)
            for key in (None, "w"):
                if key:
                    await pilot.press(key)
                await pilot.pause()
                await app.workers.wait_for_complete([w for w in app.workers if isinstance(w.node, ReviewScreen)])
                await pilot.pause()
            lst = screen.sample_list
            assert sorted(lst.ids) == sorted(scores)
            assert [scores[i] for i in lst.ids] == sorted(scores.values())  # worst first
            for i, sid in enumerate(lst.ids[:5]):
                cells = lst._render_row(i, False, 80, lst.rich_style).text.split()
                assert str(scores[sid]) in cells[:4] and f"#{sid}" in cells
            assert "Judge: " in screen.detail.text


def test_round_through_vllm_offline_batch_runner(project, home, monkeypatch, tmp_path):
    """`synth --batch local` writes the OpenAI Batch JSONL, runs vLLM's run_batch on the embedded model and stores
    the round with the same counters as an online round."""
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    seeds = tmp_path / "seeds.json"
    seeds.write_text(json.dumps([
        {"instruction": "Name a fruit that is yellow.", "input": "", "output": "A banana is yellow."},
        {"instruction": "Name an animal that can fly.", "input": "", "output": "An eagle can fly."},
        {"instruction": "Name a colour of the sky.", "input": "", "output": "The sky is often blue."}]))
    assert _cli(project, home, "init", "--description", "Answer short questions in one sentence.").exit_code == 0
    assert _cli(project, home, "import", str(seeds), "--as", "seeds").exit_code == 0
    r = _cli(project, home, "synth", "--batch", "local", "--n", "4", "--per-request", "2", "--max-tokens", "300",
             "--no-judge", "--json")
    assert r.exit_code in (0, 3), r.output
    final = json.loads([x for x in r.output.splitlines() if x.startswith("{")][-1])
    assert final["requests"] == math.ceil(4 * 1.25 / 2) == final["responses"] + final["failed_requests"]
    assert final["returned"] == (final["stored"] + final["invalid"] + final["too_short"] + final["too_long"]
                                 + final["duplicates"] + final["surplus"])
    with Store.open(project) as st:
        from tuitune.core.synth import batch, rounds

        (rnd,) = rounds.list_rounds(st)
        assert st.count(round_id=rnd.id) == final["stored"] >= 1
        job = batch.load_job(st, rnd.id)
        assert job.kind == "local" and job.status == "collected"
        outputs = [json.loads(x) for x in Path(job.output).read_text(encoding="utf-8").splitlines()]
        assert {o["custom_id"] for o in outputs} == set(job.requests)
        assert all(o["response"]["status_code"] == 200 for o in outputs)
    if final["status"] == "finished":
        assert final["stored"] == 4


def test_two_endpoints_one_stopped_mid_round(vllm_embedded, embedded_model, store, tmp_path, monkeypatch):
    """A pool of two real vLLM servers on the embedded model; the second is stopped after a few samples: it is
    taken out, the round completes on the first and the counters (overall and per teacher) are exact."""
    from tuitune.core.serving.vllm import VLLMServer
    from tuitune.core.synth.engine import RoundParams, SampleStored, SynthRound
    from tuitune.core.synth.teacher import TeacherConfig
    from tuitune.core.synth.teacher_pool import TeacherPool
    from tuitune.settings import Settings

    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    store.set_task(description="Answer short questions in one sentence.")
    store.add_samples([Sample(f"Name a thing number {i}.", f"Thing {i} is a stone.", origin="seed") for i in range(3)])
    second = VLLMServer(embedded_model, settings=Settings(), name=vllm_embedded.model_names[0],
                        log_path=tmp_path / "second.log", max_model_len=2048)
    second.start(timeout=600)
    try:
        cfg = [TeacherConfig(n, s.base_url, s.model_names[0], supports_json_schema=True, timeout=120, max_retries=1,
                             api_key=s.api_key) for n, s in (("first", vllm_embedded), ("second", second))]
        stopped = []

        def on_event(ev):
            if isinstance(ev, SampleStored) and ev.counters.stored >= 2 and not stopped:
                stopped.append(ev.counters.stored)
                second.proc.kill()  # the endpoint dies mid-round

        async def go():
            pool = TeacherPool.of([(cfg[0], 1.0), (cfg[1], 1.0)])
            try:
                fin = await SynthRound(store, pool, RoundParams(n=16, per_request=2, concurrency=4, max_tokens=200),
                                       on_event=on_event).run()
                return fin, pool.stats()
            finally:
                await pool.close()

        fin, stats = asyncio.run(go())
    finally:
        second.stop()
    assert stopped and fin.status == "finished", fin.message
    c = fin.counters
    assert c.stored == 16 == store.count(round_id=fin.round_id)
    assert c.requests == c.responses + c.failed_requests + c.cancelled_requests
    assert c.returned == c.stored + c.invalid + c.too_short + c.too_long + c.duplicates + c.surplus
    # the dead endpoint's requests failed and each went on to the live one: no request of the round failed
    assert stats["second"]["failed"] >= 1 and stats["second"]["rerouted"] == stats["second"]["failed"]
    assert c.failed_requests == 0 and not stats["first"]["out"]
    if stats["second"]["failed"] >= 3:  # three in a row: taken out with the reason
        assert "3 failures in a row" in stats["second"]["out"]
    assert stats["first"]["responses"] + stats["second"]["responses"] == c.responses
    assert stats["first"]["failed"] + stats["second"]["failed"] == c.failed_requests + \
        stats["first"]["rerouted"] + stats["second"]["rerouted"]
    by_teacher = {t: store.conn.execute("SELECT COUNT(*) FROM samples WHERE round_id = ? AND teacher = ?",
                                        (fin.round_id, t)).fetchone()[0] for t in ("first", "second")}
    assert sum(by_teacher.values()) == 16  # every sample names its teacher
    assert stats["second"]["requests"] >= 1  # it really took part before it was stopped
    from tuitune.core.synth import rounds

    saved = rounds.get_round(store, fin.round_id).counters["teachers"]
    assert saved["second"]["failed"] == stats["second"]["failed"] and \
        saved["first"]["responses"] == stats["first"]["responses"]
