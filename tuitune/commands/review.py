"""Review sub-commands without the TUI: review (list, loop, accept/reject/edit/rate/undo) and lessons."""

from __future__ import annotations

import json
import sys

import click

from tuitune.commands.common import fail, open_store


def _show(s, verdict=None) -> None:
    click.echo(click.style(f"#{s.id}", bold=True) + f"  [{s.status}] origin {s.origin}"
               + (f", round {s.round_id}" if s.round_id else "") + (f", rating {s.rating}" if s.rating else "")
               + (f", teacher {s.teacher}" if s.teacher else ""))
    if verdict is not None:
        click.echo(click.style(f"judge {verdict.score}/5: ", fg="yellow") + (verdict.critique or "(no critique)")
                   + (f"  [breaks: {verdict.lesson}]" if verdict.lesson else ""))
    click.echo(click.style("instruction: ", fg="cyan") + s.instruction)
    if s.input:
        click.echo(click.style("input:       ", fg="cyan") + s.input)
    click.echo(click.style("output:      ", fg="green") + s.output)
    if s.reason:
        click.echo(click.style("reason:      ", fg="red") + s.reason)


@click.command()
@click.option("--round", "round_id", type=int, help="Only samples of this round.")
@click.option("--status", default="pending", show_default=True,
              type=click.Choice(["pending", "accepted", "rejected", "edited", "all"]), help="Which samples to list/loop over.")
@click.option("--list", "list_", is_flag=True, help="List the samples and exit.")
@click.option("--sort", type=click.Choice(["id", "score"]), default="id", show_default=True,
              help="score: the judge's worst first (unscored last).")
@click.option("--min-score", type=click.IntRange(1, 5), help="Only samples the judge scored at least this.")
@click.option("--max-score", type=click.IntRange(1, 5), help="Only samples the judge scored at most this.")
@click.option("--json", "as_json", is_flag=True, help="With --list: one JSON object per line.")
@click.option("--accept", "accept_ids", type=int, multiple=True, help="Accept sample ID (repeatable).")
@click.option("--reject", "reject_ids", type=int, multiple=True, help="Reject sample ID (repeatable; needs --reason).")
@click.option("--reason", help="Why --reject: it becomes a lesson for the next round.")
@click.option("--edit", "edit_id", type=int, help="Edit sample ID with --instruction/--input/--output.")
@click.option("--instruction")
@click.option("--input", "input_")
@click.option("--output")
@click.option("--rate", "rates", type=(int, int), multiple=True, metavar="ID SCORE", help="Rate a sample 1-5.")
@click.option("--undo", is_flag=True, help="Undo your last review action (this terminal's; another reviewer's "
              "actions are left alone; TUITUNE_SESSION names a session).")
@click.pass_context
def review(ctx, round_id, status, list_, sort, min_score, max_score, as_json, accept_ids, reject_ids, reason, edit_id,
           instruction, input_, output, rates, undo):
    """Review samples without the TUI. With no action option, loops over the samples:
    a=accept  r=reject (asks why)  e=edit  1-5=rate  s=skip  u=undo  q=quit."""
    from tuitune.core.data import review as rv
    from tuitune.core.data.store import StoreError

    store = open_store(ctx)
    sel = None if status == "all" else status
    try:
        acted = False
        for sid in accept_ids:
            rv.accept(store, sid)
            click.echo(f"accepted #{sid}")
            acted = True
        if reject_ids:
            if not reason:
                fail("--reject needs --reason (it becomes a lesson for the next round)", code=2)
            for sid in reject_ids:
                rv.reject(store, sid, reason)
                click.echo(f"rejected #{sid}")
            acted = True
        if edit_id is not None:
            fields = {k: v for k, v in (("instruction", instruction), ("input", input_), ("output", output))
                      if v is not None}
            if not fields:
                fail("--edit needs --instruction, --input or --output", code=2)
            rv.edit(store, edit_id, **fields)
            click.echo(f"edited #{edit_id}")
            acted = True
        for sid, score in rates:
            rv.rate(store, sid, score)
            click.echo(f"rated #{sid}: {score}")
            acted = True
        if undo:
            restored = rv.undo(store)
            click.echo(f"undid your last action on #{restored.id}" if restored
                       else "nothing to undo (no review action from this terminal's session)")
            acted = True
        if acted:
            return
        from tuitune.core.curation import judgments

        samples = store.samples(status=sel, round_id=round_id)
        verdicts = judgments.get(store, [s.id for s in samples])
        if min_score or max_score:
            samples = [s for s in samples if s.id in verdicts and (min_score or 1) <= verdicts[s.id].score
                       <= (max_score or 5)]
        if sort == "score":
            samples.sort(key=lambda s: (verdicts[s.id].score if s.id in verdicts else 6, s.id))
        if list_:
            for s in samples:
                v = verdicts.get(s.id)
                if as_json:
                    click.echo(json.dumps({"id": s.id, "status": s.status, "origin": s.origin, "round": s.round_id,
                                           "rating": s.rating, "reason": s.reason, "teacher": s.teacher,
                                           "decided_by": s.decided_by, "judge": v.to_dict() if v else None,
                                           **s.to_alpaca()}, ensure_ascii=False))
                else:
                    score = f"{v.score}" if v else "-"
                    click.echo(f"#{s.id:<5} {s.status:9} {score} {s.instruction[:60]!r} -> {s.output[:50]!r}")
            return
        _loop(store, samples, verdicts)
    except StoreError as e:  # ReviewError is a StoreError
        fail(str(e))


def _loop(store, samples, verdicts=None) -> None:
    from tuitune.core.data import review as rv

    if not samples:
        click.echo("Nothing to review.")
        return
    i = 0
    done = 0
    while i < len(samples):
        s = store.get_sample(samples[i].id)
        click.echo("")
        _show(s, (verdicts or {}).get(s.id))
        key = click.prompt(f"[{i + 1}/{len(samples)}] a/r/e/1-5/s/u/q", default="s", show_default=False).strip().lower()
        try:
            if key == "q":
                break
            if key == "a":
                rv.accept(store, s.id)
                done += 1
            elif key == "r":
                for j, r in enumerate(rv.COMMON_REASONS, 1):
                    click.echo(f"  {j}. {r}")
                why = click.prompt("reason (number or text)").strip()
                if why.isdigit() and 1 <= int(why) <= len(rv.COMMON_REASONS):
                    why = rv.COMMON_REASONS[int(why) - 1]
                rv.reject(store, s.id, why)
                done += 1
            elif key == "e":
                new = click.edit(s.output) if sys.stdin.isatty() else None
                if new is None:
                    new = click.prompt("new output", default=s.output)
                rv.edit(store, s.id, output=new.strip())
                if click.confirm("accept it too?", default=True):
                    rv.accept(store, s.id)
                done += 1
            elif key in {"1", "2", "3", "4", "5"}:
                rv.rate(store, s.id, int(key))
                continue  # stay on this sample
            elif key == "u":
                restored = rv.undo(store)
                click.echo(f"undid the last action on #{restored.id}" if restored else "nothing to undo")
                if restored and i > 0 and samples[i - 1].id == restored.id:
                    i -= 1
                continue
            elif key != "s":
                click.echo("keys: a=accept r=reject e=edit 1-5=rate s=skip u=undo q=quit")
                continue
        except rv.ReviewError as e:
            click.echo(f"error: {e}", err=True)
            continue
        i += 1
    click.echo(f"Reviewed {done}. Pending left: {store.count(status='pending')}.")


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def lessons(ctx, as_json):
    """The lessons from review (rejection reasons, corrections) that the next synth round's prompt includes."""
    from tuitune.core.data.review import lessons as get_lessons

    items = get_lessons(open_store(ctx))
    if as_json:
        click.echo(json.dumps(items, ensure_ascii=False))
        return
    if not items:
        click.echo("No lessons yet: reject samples with a reason, or edit them, in `tuitune review`.")
        return
    for i, lesson in enumerate(items, 1):
        click.echo(f"{i}. {lesson}")
