"""Main screen: a conversation with the tuitune guide. Plain text and slash commands; results as cards."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Header, Input, Markdown, Static, TextArea

from tuitune.core.words import plural
from tuitune.tui.completion import CommandSuggester
from tuitune.tui.slash import BY_NAME, SLASH_COMMANDS, help_markdown
from tuitune.tui.text import md_code, md_escape


class MainScreen(Screen):
    """Focus stays on the prompt: after a dialog closes, after a resize, and when a key is typed while a card
    or the transcript has focus (the key goes to the prompt unless the focused widget binds it). The
    transcript follows new output until the user scrolls up (PageUp/PageDown work from the prompt)."""

    BINDINGS: ClassVar[list[Binding]] = [
        Binding("escape", "focus_prompt", "Prompt", show=False),
        Binding("ctrl+n", "slash('gen')", "Generate"),
        Binding("f6", "slash('verdict')", "Verdict"),  # shown when a run has held-out answers to show
        Binding("pageup", "scroll_transcript(-1)", "Scroll up", show=False),
        Binding("pagedown", "scroll_transcript(1)", "Scroll down", show=False),
        Binding("ctrl+end", "transcript_end", "Newest", show=False),
    ]
    _verdict_run: str | None = None  # the newest run with held-out answers on disk (F6)

    def compose(self) -> ComposeResult:
        yield Header()
        yield VerticalScroll(id="transcript")
        yield Input(placeholder="Type here, or / for commands (/help)", id="prompt",
                    suggester=CommandSuggester([s.name for s in SLASH_COMMANDS], self.app.settings.project))
        yield Footer(compact=True)

    @property
    def store(self):
        return self.app.store

    def on_mount(self) -> None:
        self.transcript.anchor()  # follow new output; scrolling up releases it, back at the bottom re-anchors
        self.guide(f"**tuitune** — project {md_code(str(self.app.settings.project))} (its counts are in the header)")
        self.show_next_step()
        self.follow_running_runs()
        self._verdict_run = self.latest_verdict_run()
        self.action_focus_prompt()

    def on_screen_resume(self) -> None:
        """Back from a dialog or another screen: the prompt gets the keys, the header the new counts."""
        self.app.refresh_counts()
        self.call_after_refresh(self.action_focus_prompt)

    def on_resize(self, event: events.Resize) -> None:
        if self.is_current and not isinstance(self.focused, (Input, TextArea)):
            self.call_after_refresh(self.action_focus_prompt)

    def on_key(self, event: events.Key) -> None:
        """A printable key typed while the transcript or a card has focus goes to the prompt, unless the focused
        widget binds that key (a card's own keys keep working when it has focus)."""
        focused = self.focused
        if focused is None or isinstance(focused, (Input, TextArea)) or not event.is_printable:
            return
        if event.key in self.app.active_bindings:
            return
        prompt = self.query_one("#prompt", Input)
        prompt.focus()
        prompt.insert_text_at_cursor(event.character or "")
        event.stop()
        event.prevent_default()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "slash" and parameters == ("verdict",):
            return self._verdict_run is not None  # F6 in the footer only when there is a verdict to show
        return True

    # ---- transcript ---------------------------------------------------------------------------------
    @property
    def transcript(self) -> VerticalScroll:
        return self.query_one("#transcript", VerticalScroll)

    def post(self, widget: Widget) -> Widget:
        """Add to the transcript. It scrolls to show it only while anchored (the user has not scrolled up); a
        card that grows later (a table arriving) is followed the same way."""
        self.transcript.mount(widget)
        return widget

    def action_scroll_transcript(self, pages: int) -> None:
        """PageUp / PageDown, from the prompt too. Up lets the view stay where it is when output arrives; down
        to the bottom follows new output again (Textual's own page-down would release it even there)."""
        t = self.transcript
        target = t.scroll_y + pages * max(1, t.scrollable_content_region.height - 1)
        if target >= t.max_scroll_y:
            t.scroll_end(animate=False, immediate=True)
        else:
            t.scroll_to(y=max(0, target), animate=False, immediate=True)

    def action_transcript_end(self) -> None:
        self.transcript.scroll_end(animate=False)  # and follow again

    def user(self, text: str) -> None:
        """What the user typed (or ran from a key or the palette), shown as typed: plain text, no markup."""
        self.post(Static(Text(text), classes="msg-user"))

    def guide(self, text: str) -> None:
        self.post(Markdown(text, classes="msg-guide"))

    def error(self, text: str) -> None:
        self.post(Markdown(f"**Problem:** {text}", classes="msg-error"))

    def show_next_step(self, *, trend: bool = False) -> None:
        """The guide's next step; with `trend` (after review or a round), how acceptance moved over the rounds."""
        from tuitune.core.guide import next_step

        settings = self.app.settings  # the base it trains on: the guide says when another suits the languages
        step = next_step(self.store, runs_done=self._runs_done(), base=settings.base_model,
                         models_dir=settings.models_dir)
        text = f"**Next: {step.title}.** {step.message}"
        if trend:
            from tuitune.core.curation.round_stats import round_stats
            from tuitune.core.curation.round_stats import trend as rounds_trend

            line = rounds_trend(round_stats(self.store))
            if line:
                text += f" — {md_escape(line)}"
        self.guide(text)

    def _runs_done(self) -> int:
        try:
            from tuitune.core.training.jobs import list_runs
        except ImportError:
            return 0
        return sum(1 for r in list_runs(self.app.settings.project) if r.status == "done")

    # ---- input ----------------------------------------------------------------------------------------
    def action_focus_prompt(self) -> None:
        self.query_one("#prompt", Input).focus()

    def action_slash(self, name: str) -> None:
        self.run_command(f"/{name}", echo=True)

    def prefill(self, text: str) -> None:
        prompt = self.query_one("#prompt", Input)
        prompt.value = text
        prompt.cursor_position = len(text)
        prompt.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "prompt":
            return
        text = event.value.strip()
        event.input.value = ""
        if text:
            self.run_command(text, echo=True)

    def run_command(self, text: str, *, echo: bool = False) -> None:
        """Run a line of the prompt. `echo` shows it in the transcript first, as typed: keys and the palette
        echo too, so what follows is not read as the previous command's output."""
        if echo:  # the user acts: show the answer, following new output again
            self.transcript.scroll_end(animate=False)
            self.user(text)
        if not text.startswith("/"):
            self.plain_text(text)
            return
        name, _, arg = text[1:].partition(" ")
        if name not in BY_NAME:
            close = [s.name for s in SLASH_COMMANDS if s.name.startswith(name[:2])]
            hint = f" Did you mean {', '.join('`/' + c + '`' for c in close)}?" if close else ""
            self.error(f"unknown command {md_code('/' + name)}.{hint} Type `/help` for the list.")
            return
        getattr(self, f"cmd_{name}")(arg.strip())

    def plain_text(self, text: str) -> None:
        from tuitune.core.guide import next_step, task_name

        step = next_step(self.store, runs_done=self._runs_done())
        if step.key == "task":  # the guide asked for the task: this is it
            name = task_name(text)
            self.store.set_task(name=name, description=text)
            self.guide(f"Task saved as **{md_escape(name)}** (the whole sentence is its description). Change it "
                       f"any time with `/task NAME: DESCRIPTION`.")
            self.show_next_step()
        else:
            self.guide(f"Noted, but I act on commands. {step.message}")

    # ---- task and data --------------------------------------------------------------------------------
    def cmd_help(self, arg: str) -> None:
        from tuitune.tui.screens.help import HelpScreen

        self.app.push_screen(HelpScreen(help_markdown()))

    def cmd_task(self, arg: str) -> None:
        name, sep, desc = arg.partition(":")
        if not sep or not name.strip() or not desc.strip():
            task = self.store.get_task()
            self.error(f"usage: `{BY_NAME['task'].usage}`. Now: **{md_escape(task.name or '-')}** — "
                       f"{md_escape(task.description or '-')}")
            return
        self.store.set_task(name=name.strip(), description=desc.strip())
        self.guide(f"Task saved: **{md_escape(name.strip())}**.")
        self.show_next_step()

    def cmd_system(self, arg: str) -> None:
        if not arg:
            self.guide(f"System prompt: {md_escape(self.store.get_task().system_prompt or '(none)')}")
            return
        self.store.set_task(system_prompt=arg)
        self.guide("System prompt saved; training and chat use it.")

    def cmd_seed(self, arg: str) -> None:
        from tuitune.tui.screens.seed import SeedForm

        def saved(sample) -> None:
            if sample is not None:
                stored = self.store.add_sample(sample)
                self.guide(f"Seed #{stored.id} saved ({plural(self.store.count(origin='seed'), 'seed')}).")
                self.show_next_step()

        self.app.push_screen(SeedForm(system=self.store.get_task().system_prompt), saved)

    def cmd_import(self, arg: str) -> None:
        from tuitune.core.data.formats import FormatError
        from tuitune.core.data.importing import IMPORT_AS, import_file

        try:
            parts = shlex.split(arg)
        except ValueError as e:
            self.error(f"cannot read the arguments: {e}")
            return
        if not parts:
            self.error(f"usage: `{BY_NAME['import'].usage}`")
            return
        as_ = parts[1] if len(parts) > 1 else "accepted"
        if as_ not in IMPORT_AS:
            self.error(f"{md_code(as_)}: expected seeds, accepted or pending")
            return
        if parts[0].startswith("hf://"):  # a Hub dataset from the local cache (core/data/sources.py)
            path = parts[0]
        else:
            path = Path(parts[0]).expanduser()
            if not path.is_absolute():
                path = self.app.settings.project / path
        try:
            rep = import_file(self.store, path, as_=as_)
        except FormatError as e:
            way = {"skip_invalid": " (or import only its valid records: `tuitune import --skip-invalid` in a shell)",
                   "max_bytes": " (or raise the limit: `tuitune import --max-size 2G` in a shell)",
                   "columns": " (or map the columns: `tuitune import FILE --map instruction=COLUMN,output=COLUMN`"
                              " in a shell)"}
            self.error(f"nothing imported from {md_code(str(path))}. Fix the file{way.get(e.remedy or '', '')}:"
                       f"\n\n```\n{e}\n```")
            return
        dups = rep.parsed.duplicates + rep.already_in_project
        dup = f"; {plural(dups, 'duplicate')} kept (`tuitune dedup` removes them)" if dups else ""
        pairs = f", {plural(rep.pairs, 'preference pair')} among them (DPO uses them)" if rep.pairs else ""
        self.guide(f"Imported **{rep.stored}** {'record' if rep.stored == 1 else 'records'} ({rep.parsed.format}) "
                   f"as {as_}{pairs}{dup}.")
        self.show_next_step()

    def cmd_stats(self, arg: str) -> None:
        st = self.store.stats()
        rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(st["by_status"].items()))
        rows2 = "\n".join(f"| {k} | {v} |" for k, v in sorted(st["by_origin"].items()))
        self.guide(f"**{plural(st['total'], 'sample')}**, {plural(st['rounds'], 'round')}, "
                   f"{plural(st['duplicates'], 'exact duplicate')}\n\n"
                   f"| status | n |\n|---|---|\n{rows}\n\n| origin | n |\n|---|---|\n{rows2}")

    def cmd_lessons(self, arg: str) -> None:
        from tuitune.core.data.review import lessons

        got = lessons(self.store)
        if not got:
            self.guide("No lessons yet: reject samples with a reason or edit them in `/review`.")
            return
        self.guide("**Lessons for the next round:**\n\n" + "\n".join(f"- {md_escape(item)}" for item in got))

    def cmd_export(self, arg: str) -> None:
        from tuitune.core.data.export import EXPORT_FORMATS, SUFFIX, ExportError, export
        from tuitune.core.data.groups import parse_test_size

        parts = arg.split()
        fmt = parts[0] if parts else "alpaca"
        if fmt not in EXPORT_FORMATS:
            self.error(f"{md_code(fmt)}: expected one of {', '.join(EXPORT_FORMATS)}")
            return
        try:
            test_size = parse_test_size(parts[1]) if len(parts) > 1 else 0
        except ValueError as e:
            self.error(str(e))
            return
        exports = self.app.settings.project / "exports"
        output = exports / fmt if test_size else exports / f"{fmt}{SUFFIX[fmt]}"

        def write(yes: bool | None = True) -> None:
            if not yes:
                self.guide(f"Not exported: {md_code(str(output))} is kept as it was.")
                return
            try:
                res = export(self.store, fmt, output, test_size=test_size)
            except ExportError as e:
                self.error(str(e))
                return
            lines = "\n".join(f"- {md_escape(line)}" for line in res.summary())
            self.guide(f"Exported ({fmt}):\n\n{lines}")

        if output.exists():  # an earlier export (perhaps edited by hand since): ask first
            from tuitune.tui.screens.confirm import Confirm

            self.app.push_screen(Confirm(f"{output} exists. Overwrite it with a new {fmt} export?", "Overwrite",
                                         "Keep it"), write)
            return
        write()

    # ---- synthesis, review -----------------------------------------------------------------------------
    def cmd_gen(self, arg: str) -> None:
        from tuitune.tui.widgets.round_card import RoundCard

        parts = arg.split()
        try:
            n = int(parts[0]) if parts else 20
        except ValueError:
            self.error(f"{md_code('/gen ' + arg)}: give a number of samples, e.g. `/gen 20` (or `/gen 20 TEACHER`)")
            return
        if n < 1:
            self.error("ask for at least 1 sample")
            return
        self.post(RoundCard(n, teacher=parts[1] if len(parts) > 1 else None))

    def on_round_card_finished(self, event) -> None:
        self.show_next_step(trend=True)

    def on_round_finished(self, event) -> None:
        """A /gen round ended (its card saw it first): the judge scores its samples."""
        if event.round_id is not None and (event.counters or {}).get("stored", 0):
            self.guide(f"Scoring round {event.round_id}'s samples with the judge (the default teacher); "
                       f"`/review` shows the scores.")
            self._judge(event.round_id)

    def cmd_judge(self, arg: str) -> None:
        try:
            round_id = int(arg) if arg else None
        except ValueError:
            self.error(f"{md_code('/judge ' + arg)}: give a round number, e.g. `/judge 2` (or none: every round)")
            return
        self._judge(round_id)

    def _judge(self, round_id: int | None) -> None:
        from tuitune.tui.widgets.judge_card import JudgeCard

        self.post(JudgeCard(round_id))

    def on_judge_card_finished(self, event) -> None:
        self.guide(f"Judge: {md_escape(event.summary)}")

    def cmd_rounds(self, arg: str) -> None:
        from tuitune.tui.screens.rounds import RoundsScreen

        self.app.push_screen(RoundsScreen(self.store))

    def cmd_review(self, arg: str) -> None:
        from tuitune.tui.screens.review import ReviewScreen

        def done(result) -> None:
            if isinstance(result, dict) and any(result.values()):
                self.guide("Review: " + ", ".join(f"{k} {v}" for k, v in result.items()))
            self.show_next_step(trend=True)

        self.app.push_screen(ReviewScreen(self.store), done)

    # ---- training ---------------------------------------------------------------------------------------
    def cmd_train(self, arg: str) -> None:
        from tuitune.tui.screens.train import TrainScreen

        def launched(run_id) -> None:
            if run_id:
                self.follow_run(run_id)

        self.app.push_screen(TrainScreen({"base": self.app.settings.base_model, "eval": True}), launched)

    def follow_run(self, run_id: str) -> None:
        from tuitune.tui.widgets.train_card import TrainCard

        if not self.query(f"#run-{run_id}"):
            self.post(TrainCard(run_id, id=f"run-{run_id}"))

    def follow_running_runs(self) -> None:
        try:
            from tuitune.core.training.jobs import list_runs
        except ImportError:
            return
        for run in list_runs(self.app.settings.project):
            if run.status == "running":
                self.follow_run(run.id)

    def on_train_card_finished(self, event) -> None:
        self.show_next_step()
        self._verdict_changed()

    def on_eval_card_finished(self, event) -> None:
        self._verdict_changed()

    def _verdict_changed(self) -> None:
        self._verdict_run = self.latest_verdict_run()
        self.refresh_bindings()  # F6 shows in the footer once there is a verdict

    def latest_verdict_run(self) -> str | None:
        """The newest run with held-out answers on disk (its verdict after training, or an `/eval`)."""
        from tuitune.core.evaluation.report import REPORT_DIR, VERDICT_FILE

        runs = self.app.settings.project / "runs"
        if not runs.is_dir():
            return None
        done = sorted(d.name for d in runs.iterdir()
                      if any((d / REPORT_DIR / name).is_file() for name in (VERDICT_FILE, "report.json")))
        return done[-1] if done else None

    def cmd_verdict(self, arg: str) -> None:
        """The held-out answers side by side: the run's verdict after training (verdict.json), else its latest
        `/eval` (report.json)."""
        from tuitune.core.evaluation.report import VERDICT_FILE, load_report
        from tuitune.tui.widgets.verdict import HeldOutItems

        run_id = arg or self.latest_verdict_run()
        if not run_id:
            self.error("no held-out answers yet: a run trained with its verdict on (`/train`) or `/eval` makes them")
            return
        run_dir = self.app.settings.project / "runs" / Path(run_id).name
        report = (load_report(run_dir, VERDICT_FILE) or load_report(run_dir)) if run_dir.is_dir() else None
        if not report:
            self.error(f"run {md_code(run_id)} has no held-out answers (no {md_code(str(run_dir / 'eval'))}): "
                       f"{md_code('/eval ' + run_id)} makes them")
            return
        self.app.push_screen(HeldOutItems(report))

    def cmd_runs(self, arg: str) -> None:
        from tuitune.core.training.jobs import list_runs

        runs = list_runs(self.app.settings.project)
        if not runs:
            self.guide("No training runs yet: `/train`.")
            return
        def cell(text) -> str:
            return md_escape(str(text)).replace("|", "\\|")

        def verdict(r) -> str:  # the held-out verdict in words, like `tuitune runs` (phase while it runs)
            v = r.verdict or {}
            return cell(v.get("summary") or v.get("verdict") or r.phase or "")

        rows = "\n".join(f"| {r.id} | {r.status} | {r.method} | {r.step}/{r.max_steps or '?'} | "
                         f"{'' if r.loss is None else f'{r.loss:.3f}'} | {cell(r.base)} | {verdict(r)} |"
                         for r in runs)
        why = "".join(f"\n\n**{r.id}** {r.status}: {md_escape(str(r.error))}" +
                      (f"\n\n{md_escape(str(r.hint))}" if r.hint else "") for r in runs if r.error)
        self.guide(f"| run | status | method | step | loss | base | verdict |\n|---|---|---|---|---|---|---|\n"
                   f"{rows}{why}")
        for r in runs:
            if r.status == "running":
                self.follow_run(r.id)

    # ---- serving, chat, eval -----------------------------------------------------------------------------
    def _latest_done_run(self) -> str | None:
        from tuitune.core.training.jobs import list_runs

        done = [r for r in list_runs(self.app.settings.project) if r.status == "done"]
        return done[-1].id if done else None

    def cmd_chat(self, arg: str) -> None:
        from tuitune.tui.screens.chat import ChatScreen

        run_id = arg or self._latest_done_run()
        if run_id is None:
            self.guide("No finished training run yet: chatting with the base model.")
        self.app.push_screen(ChatScreen(run_id=run_id))

    def cmd_compare(self, arg: str) -> None:
        from tuitune.tui.screens.compare import CompareScreen

        self.app.push_screen(CompareScreen(run_id=arg or self._latest_done_run()))

    def cmd_gguf(self, arg: str) -> None:
        """Export a run's tuned model as a GGUF + Ollama Modelfile (core/export_model) in a card."""
        from tuitune.core.export_model import ExportError
        from tuitune.core.export_model.export import OutputExists, preflight_gguf
        from tuitune.tui.widgets.export_card import ExportCard

        parts = arg.split()
        run_id = parts[0] if parts else self._latest_done_run()
        quant = parts[1] if len(parts) > 1 else "q8_0"
        if not run_id:
            self.error("no finished run to export: `/train` first")
            return
        try:  # the instant refusals here (unknown run or quant, no quantizer); an existing file is asked about
            preflight_gguf(self.app.settings.project, run_id, quant=quant)
        except OutputExists:
            from tuitune.tui.screens.confirm import Confirm

            def answered(yes: bool | None) -> None:
                if yes:
                    self.post(ExportCard(run_id, quant, force=True))
                else:
                    self.guide(f"Not exported: the GGUF of {md_code(run_id)} ({quant}) is kept as it was.")

            self.app.push_screen(Confirm(f"A {quant} GGUF of {run_id} exists. Replace it?", "Replace", "Keep it"),
                                 answered)
            return
        except ExportError as e:
            self.error(md_escape(str(e)))
            return
        self.post(ExportCard(run_id, quant))

    def cmd_eval(self, arg: str) -> None:
        from tuitune.tui.widgets.eval_card import EvalCard

        run_id = arg or self._latest_done_run()
        if not run_id:
            self.error("no finished run to evaluate: `/train` first")
            return
        self.post(EvalCard(run_id))

    def cmd_settings(self, arg: str) -> None:
        from tuitune.tui.screens.settings import SettingsScreen

        self.app.push_screen(SettingsScreen())
