"""`tuitune judge`: score samples with the judge, show how far it agrees with your own decisions, and apply the
bulk actions those numbers allow."""

from __future__ import annotations

import asyncio
import json

import click

from tuitune.commands.common import fail, open_store, progress_bar, settings


def teachers_from_spec(ctx, spec: str | None, *, timeout=None):
    """[(TeacherConfig, weight)] for a teacher spec ("a", "a,b", "a=3,b=1"; None: the default teacher)."""
    from tuitune.core.synth.teacher import TeacherError, TeachersFileError, get_teacher
    from tuitune.core.synth.teacher_pool import parse_teacher_spec

    try:
        names = parse_teacher_spec(spec) if spec else [(None, 1.0)]
        out = []
        for name, weight in names:
            cfg = get_teacher(settings(ctx), name)
            if timeout:
                cfg.timeout = timeout
            out.append((cfg, weight))
        return out
    except TeacherError as e:
        fail(str(e), code=2 if isinstance(e, (TeachersFileError,)) or spec else 1)


def client_for(configs):
    """A Teacher for one endpoint, a TeacherPool for several (live configs: the embedded one started)."""
    from tuitune.core.synth.teacher import Teacher
    from tuitune.core.synth.teacher_pool import TeacherPool

    if len(configs) == 1:
        return Teacher(configs[0][0])
    return TeacherPool.of(configs)


async def judge_round_samples(store, judge, project, *, round_id=None, again=False, concurrency=8,
                              quiet=False):
    """Score what still needs a score (of one round), with a progress bar; returns the JudgeResult."""
    from tuitune.core.curation import judge as jd
    from tuitune.core.curation import judgments

    rubric = jd.rubric_version(project)
    name = ",".join(c.name for c in getattr(judge, "configs", None) or [judge.config])
    ids = judgments.to_judge(store, round_id=round_id, again=again)
    if not ids:
        return jd.JudgeResult()
    with progress_bar(f"judge ({name})", total=float(len(ids))) as update:
        res = await jd.judge_samples(store, judge, ids, project=project, concurrency=concurrency,
                                     on_progress=lambda r: update(f"judge ({name}): {r.judged} scored, "
                                                                  f"{r.failed + r.unparseable} not",
                                                                  float(r.judged + r.failed + r.unparseable)))
    if not quiet:
        dist = " ".join(f"{s}:{res.scores.get(s, 0)}" for s in range(1, 6))
        click.echo(f"judged {res.judged}/{res.total} with {name} ({rubric}); scores {dist}")
        if res.message:
            click.echo(res.message, err=True)
    return res


def agreement_report(store, *, as_json: bool, min_precision: float = 0.9) -> None:
    from tuitune.core.curation import agreement as ag
    from tuitune.core.curation import judgments

    agr = ag.agreement(judgments.decisions(store))
    pending = [score for _, score in judgments.pending_scores(store)]
    offers = ag.bulk_offers(agr, pending, min_precision=min_precision)
    if as_json:
        click.echo(json.dumps({**agr.to_dict(), "offers": [o.to_dict() for o in offers],
                               "pending_scored": len(pending)}, ensure_ascii=False, allow_nan=False))
        return
    click.echo(ag.summary_line(agr))
    if not agr.enough:
        return
    cm = agr.confusion
    if cm:
        click.echo(f"at ≥ {agr.best_threshold}: judge accept & you accepted {cm['accept_accept']}, judge accept & you "
                   f"rejected {cm['accept_reject']}, judge reject & you accepted {cm['reject_accept']}, judge reject "
                   f"& you rejected {cm['reject_reject']}")

    def fmt(p):
        return f"{p.precision:.2f} ({p.low:.2f}–{p.high:.2f}, {p.k}/{p.n})" if p.precision is not None else "-"

    for t in range(1, 6):
        click.echo(f"  T={t}: judge ≥ T ⇒ accepted {fmt(agr.precision_accept[t])}   judge ≤ T ⇒ rejected "
                   f"{fmt(agr.precision_reject[t])}")
    for o in offers:
        click.echo(f"offer: {o.sentence}  (`tuitune judge --bulk {o.action}`)")
    if not offers:
        click.echo(f"no bulk action is safe yet: no threshold's precision interval stays above {min_precision:.2f}")


@click.command()
@click.option("--round", "round_id", type=int, help="Only the samples of this round.")
@click.option("--teacher", help="The judge: a named teacher (teachers.yaml), or several (a,b or a=3,b=1). Default: "
              "the default teacher.")
@click.option("--again", is_flag=True, help="Score again samples that already have a score.")
@click.option("--concurrency", type=int, default=8, show_default=True, help="Requests in flight at most.")
@click.option("--timeout", type=float, help="Seconds per request attempt.")
@click.option("--agreement", is_flag=True, help="Show how far the judge agrees with your decisions and exit.")
@click.option("--bulk", type=click.Choice(["accept", "reject"]), help="Apply the bulk action the agreement "
              "numbers offer (one undoable action: `tuitune review --undo`).")
@click.option("--reason", default="scored low by the judge", show_default=True, help="The reason a bulk reject "
              "records (it becomes a lesson).")
@click.option("--min-precision", type=click.FloatRange(0.5, 1.0), default=0.9, show_default=True,
              help="A bulk action is offered at a threshold whose precision interval on your decisions stays above "
              "this (its lower bound).")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_context
def judge(ctx, round_id, teacher, again, concurrency, timeout, agreement, bulk, reason, min_precision, as_json):
    """Score samples 1-5 with the judge (a teacher endpoint, against the task, the system prompt and the lessons),
    with a one-line critique; the rubric is prompts/judge_sample.md.j2 (a project's own file in <project>/prompts/
    replaces it). Scoring is resumable: a run scores only what has no score yet."""
    from tuitune.core.curation import agreement as ag
    from tuitune.core.curation import judgments
    from tuitune.core.data import review as rv

    store = open_store(ctx)
    st = settings(ctx)
    if concurrency < 1:
        fail("--concurrency must be at least 1", code=2)
    if agreement:
        agreement_report(store, as_json=as_json, min_precision=min_precision)
        return
    if bulk:
        agr = ag.agreement(judgments.decisions(store))
        scored = judgments.pending_scores(store)
        offers = ag.bulk_offers(agr, [s for _, s in scored], min_precision=min_precision)
        offer = next((o for o in offers if o.action == bulk), None)
        if offer is None:
            fail(ag.not_enough_sentence(agr) if not agr.enough else
                 f"no bulk {bulk} is offered: no threshold's precision on your decisions stays above "
                 f"{min_precision:.2f} "
                 f"(`tuitune judge --agreement` shows the numbers)")
        ids = [sid for sid, s in scored if (s >= offer.threshold if bulk == "accept" else s <= offer.threshold)]
        n = rv.bulk(store, ids, bulk, reason=reason)
        out = {"action": bulk, "threshold": offer.threshold, "changed": n, "offer": offer.sentence}
        click.echo(json.dumps(out, ensure_ascii=False) if as_json else
                   f"{bulk}ed {n} samples: {offer.sentence}. Undo with `tuitune review --undo`.")
        return
    configs = teachers_from_spec(ctx, teacher, timeout=timeout)
    if not judgments.to_judge(store, round_id=round_id, again=again):
        click.echo(json.dumps({"total": 0, "judged": 0}) if as_json else "Nothing to judge: every sample has a "
                   "score (use --again to score again).")
        return
    from tuitune.core.serving.pool import EnginePool
    from tuitune.core.serving.vllm import ServingError
    from tuitune.core.synth.teacher import TeacherError

    try:
        with EnginePool(st, st.project / "logs") as pool:
            live = [(pool.live_teacher(c), w) for c, w in configs]

            async def main():
                client = client_for(live)
                try:
                    return await judge_round_samples(store, client, st.project, round_id=round_id, again=again,
                                                     concurrency=concurrency, quiet=as_json)
                finally:
                    await client.close()

            res = asyncio.run(main())
    except (TeacherError, ServingError) as e:
        fail(str(e))
    except KeyboardInterrupt:
        click.echo("Cancelled; the scores given so far are kept. Run `tuitune judge` again for the rest.", err=True)
        raise SystemExit(130) from None
    if as_json:
        click.echo(json.dumps(res.to_dict(), ensure_ascii=False))
    if res.total and res.judged < res.total:
        raise SystemExit(3)
