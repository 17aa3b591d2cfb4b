"""Chat with a served model (the tuned one, or the base model before any run); save an exchange as a seed.

`/chat` has one column: the run's tuned model (or the base model). `/compare` (screens/compare.py) is this
screen with two columns, base and tuned, each with its own history. Messages typed while the model server is
still starting are queued: they show in the transcript as "waiting for the server…" and are sent, in order, once
it is ready (or marked "not sent" if it fails to start). Each model's history is kept for this app session:
leaving and coming back to the same screen shows it again (Ctrl+L starts afresh)."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import ClassVar
from weakref import WeakKeyDictionary

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Header, Input, Markdown, Static

from tuitune.tui.events import ServerFailed, ServerReady

WAITING = "waiting for the server…"
# each model's conversation per app (kept while the app runs): (screen kind, run id, model name) -> history
_KEPT: WeakKeyDictionary[App, dict[tuple[str, str, str], list[tuple[str, str]]]] = WeakKeyDictionary()


@dataclass
class Queued:
    """A message typed before it could be sent: its place in each column, and the "waiting" line under it."""

    prompt: str
    asked: list[Widget] = field(default_factory=list)
    notes: list[Static] = field(default_factory=list)


class ChatScreen(Screen):
    CSS_PATH = "../chat.tcss"
    KIND = "chat"
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+x", "stop", "Stop", priority=True),  # before the input box's cut
        Binding("ctrl+g", "regenerate", "Regenerate"),
        Binding("ctrl+s", "save_seed", "Save seed"),
        Binding("ctrl+o", "toggle_greedy", "Greedy", priority=True),
        Binding("f6", "answer_settings", "Settings"),
        Binding("ctrl+r", "restart", "Restart server", show=False),  # errors say when it is needed
        Binding("ctrl+l", "clear", "Clear", show=False),
        # The app's F1-F5 and Ctrl+Q still work here but stay out of the footer, which then fits 80 columns.
        Binding("ctrl+q", "app.quit", "Quit", show=False, priority=True),
        *(Binding(f"f{n}", f"app.slash('{name}')", name.capitalize(), show=False)
          for n, name in enumerate(("help", "review", "train", "chat", "settings"), 1)),
    ]

    def __init__(self, run_id: str | None = None, compare: bool = False, *, backends: list | None = None,
                 params=None):
        """`compare`: the base model beside the tuned one (CompareScreen, `/compare`, is that with greedy
        answers). `backends`: answer with these instead of the app pool's. `params`: the GenParams to start with
        (default: `default_params()`)."""
        super().__init__()
        self.run_id = run_id
        self.compare = compare and bool(run_id)
        self.sessions: list = []
        self.panes: list[VerticalScroll] = []
        self.busy = 0
        self.state = "starting"  # "starting", "ready", "failed"; "unavailable": nothing to serve (compare, no run)
        self.params = params  # GenParams for every model; the default is set when the engines are ready
        self._sampled_temperature = 0.7  # what Ctrl+O goes back to after greedy
        self._given = backends
        self._backends: list = []
        self._queue: deque[Queued] = deque()
        self._turn = asyncio.Lock()  # one exchange (all columns) at a time, in the order typed
        self._draining = False
        self._engine_line = self._engine_note = ""

    # ---- what this screen shows --------------------------------------------------------------------------
    def column_titles(self) -> list[str]:
        """The columns before the models are known (one per model that will answer)."""
        if self.compare:
            return [f"tuned · {self.run_id}", "base"]
        return [self.run_id or "base model"]

    def title_for(self, i: int, backend) -> str:
        return backend.name

    def default_params(self):
        from tuitune.core.serving.chat import GenParams

        return GenParams()

    def describe(self, event: ServerReady) -> str:
        return (f"chat with {self.run_id or 'the base model'} · engine: {event.engine} · models: "
                f"{', '.join(event.models)} · system prompt: the task's")

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("starting the model server (about a minute on CPU the first time)… You can type already: "
                     "messages are sent when it is ready.", id="chat-engine")
        with Horizontal(id="chat-panes"):
            for title in self.column_titles():
                with Vertical(classes="chat-col"):
                    yield Static(title, classes="pane-title", markup=False)
                    yield VerticalScroll(classes="chat-pane")
        yield Input(placeholder="Ask the model… (Enter sends)", id="chat-input")
        yield Footer(compact=True)

    def unavailable(self) -> str:
        """Why there is nothing to start (shown instead of starting), or "" when there is."""
        return ""

    def on_mount(self) -> None:
        self.panes = list(self.query(".chat-pane").results(VerticalScroll))
        box = self.query_one("#chat-input", Input)
        why = self.unavailable()
        if why:
            self.state = "unavailable"
            self.query_one("#chat-engine", Static).update(why, layout=True)
            box.disabled = True
            return
        box.focus()
        self.start_engines()

    # ---- starting ----------------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="chat-engine")
    def start_engines(self) -> None:
        from tuitune.core.models import ModelError
        from tuitune.core.serving.errors import ChatError, ServingError
        from tuitune.core.serving.pool import chat_targets

        try:
            backends = self._given or chat_targets(self.app.engines, self.run_id, with_base=self.compare)
        except (ServingError, ChatError, ModelError) as e:
            self.post_message(ServerFailed(str(e)))
            return
        self._backends = backends
        self.post_message(ServerReady(backends[0].location, [b.name for b in backends], backends[0].engine))

    @on(ServerReady)
    async def server_ready(self, event: ServerReady) -> None:
        from tuitune.core.serving.chat import ChatSession

        self._engine_line = self.describe(event)
        self._engine_note = self.app.engines.note if event.engine != "vllm" else ""
        if self.params is None:
            self.params = self.default_params()
        self.sessions = [ChatSession.for_store(self.app.store, b, params=self.params) for b in self._backends]
        await self._fit_columns(len(self._backends))
        for i, (b, col) in enumerate(zip(self._backends, self.query(".chat-col"), strict=True)):
            col.query_one(".pane-title", Static).update(self.title_for(i, b))
        await self._restore()
        self.state = "ready"
        self._show_engine()
        self._drain()

    async def _fit_columns(self, n: int) -> None:
        """One column per model that answers (the columns were laid out before the models were known; what
        was typed meanwhile stays in the first ones)."""
        row = self.query_one("#chat-panes", Horizontal)
        cols = list(self.query(".chat-col"))
        for col in cols[n:]:
            await col.remove()
        for item in self._queue:
            item.asked, item.notes = item.asked[:n], item.notes[:n]
        for _ in range(len(cols), n):
            pane = VerticalScroll(classes="chat-pane")
            await row.mount(Vertical(Static("", classes="pane-title", markup=False), pane, classes="chat-col"))
        self.panes = list(self.query(".chat-pane").results(VerticalScroll))
        for item in self._queue:  # a column added now gets the waiting messages too
            for pane in self.panes[len(item.asked):]:
                asked = Markdown(item.prompt, classes="msg-user")
                item.asked.append(asked)
                await pane.mount(asked)

    @on(ServerFailed)
    def server_failed(self, event: ServerFailed) -> None:
        from rich.markup import escape

        self.state = "failed"
        # the error may carry a vLLM log tail, whose "[file.py:12]" parts are not Rich markup
        self.query_one("#chat-engine", Static).update(f"[red]cannot serve the model:[/red] {escape(event.error)}"
                                                      "\nCtrl+R tries again.")
        while self._queue:
            for note in self._queue.popleft().notes:
                note.update(self._not_sent())

    @staticmethod
    def _not_sent() -> str:
        return "[b red]not sent:[/b red] the model server did not start (see the top line); Ctrl+R tries again"

    def _show_engine(self) -> None:
        p = self.params
        settings = (f"temperature {p.temperature:g}" + (" (greedy)" if p.temperature == 0 else "")
                    + f" · max tokens {p.max_tokens}" + (f" · seed {p.seed}" if p.seed is not None else "")
                    + (f" · stop {p.stop!r}" if p.stop else "") + " · F6 to change")
        self.query_one("#chat-engine", Static).update(
            "\n".join(x for x in (self._engine_line, settings, self._engine_note) if x), layout=True)

    # ---- history kept for the app session ----------------------------------------------------------------
    def _kept(self) -> dict[tuple[str, str, str], list[tuple[str, str]]]:
        return _KEPT.setdefault(self.app, {})

    def _key(self, session) -> tuple[str, str, str]:
        return (self.KIND, self.run_id or "", session.backend.name)

    async def _restore(self) -> None:
        """Show (and continue) each model's conversation from the last visit to this screen."""
        kept = self._kept()
        for pane, session in zip(self.panes, self.sessions, strict=False):
            session.history = list(kept.get(self._key(session), []))
            for prompt, answer in session.history:
                await pane.mount(Markdown(prompt, classes="msg-user"), Markdown(answer, classes="msg-assistant"))
            pane.scroll_end(animate=False)

    def _keep(self) -> None:
        kept = self._kept()
        for session in self.sessions:
            kept[self._key(session)] = list(session.history)

    def on_unmount(self) -> None:
        if self.sessions:
            self._keep()

    async def action_clear(self) -> None:
        """Start the conversation afresh (every model forgets the earlier turns)."""
        if self._turn.locked():
            self.notify("Wait for the answer (or Ctrl+X stops it), then clear.", severity="warning")
            return
        for session in self.sessions:
            session.clear()
        for pane in self.panes:
            await pane.remove_children()
        self._keep()
        self.notify("Cleared: the next message starts a new conversation.")

    # ---- generation settings -----------------------------------------------------------------------------
    def _set_params(self, params) -> None:
        self.params = params
        for session in self.sessions:
            session.params = params
        self._show_engine()

    def action_toggle_greedy(self) -> None:
        """Greedy decoding (temperature 0: the same prompt always gets the same answer, handy for judging a model)
        or back to sampling at the last sampled temperature; applies from the next answer, to every model."""
        from dataclasses import replace

        if self.state != "ready":
            self.notify("The model is still starting; Ctrl+O works once it is ready.", severity="warning")
            return
        if self.params.temperature > 0:
            self._sampled_temperature = self.params.temperature
            temperature = 0.0
        else:
            temperature = self._sampled_temperature
        self._set_params(replace(self.params, temperature=temperature))
        self.notify("greedy: the same prompt gets the same answer" if temperature == 0
                    else f"sampling at temperature {temperature:g}")

    def action_answer_settings(self) -> None:
        """Temperature, top-p, max tokens, seed and stop strings for every model, from the next answer."""
        from tuitune.tui.screens.gen_settings import GenSettings

        if self.state != "ready":
            self.notify("The model is still starting; settings can be changed once it is ready.", severity="warning")
            return

        def applied(params) -> None:
            if params is not None:
                self._set_params(params)

        self.app.push_screen(GenSettings(self.params), applied)

    # ---- sending -----------------------------------------------------------------------------------------
    @on(Input.Submitted, "#chat-input")
    async def send(self, event: Input.Submitted) -> None:
        prompt = event.value.strip()
        if not prompt:
            return
        event.input.value = ""
        item = Queued(prompt)
        waiting = self.state == "starting" or self._turn.locked() or bool(self._queue)
        for pane in self.panes:
            asked = Markdown(prompt, classes="msg-user")
            item.asked.append(asked)
            await pane.mount(asked)
            if self.state == "failed":
                await pane.mount(Static(self._not_sent(), classes="msg-note"))
            elif waiting:
                note = Static(WAITING if self.state == "starting" else "waiting for the answer above…",
                              classes="msg-note")
                item.notes.append(note)
                await pane.mount(note)
            pane.scroll_end(animate=False)
        if self.state == "failed":
            return
        self._queue.append(item)
        if self.state == "ready":
            self._drain()

    @work(group="chat-answers")
    async def _drain(self) -> None:
        """Send the queued messages one exchange at a time, in the order they were typed."""
        if self._draining:
            return
        self._draining = True
        try:
            while self._queue and self.state == "ready":
                item = self._queue.popleft()
                async with self._turn:
                    for note in item.notes:
                        await note.remove()
                    await asyncio.gather(*(self._answer(i, item.prompt, after=item.asked[i])
                                           for i in range(len(self.sessions))))
                self._keep()
        finally:
            self._draining = False

    async def _answer(self, i: int, prompt: str | None, after: Widget | None = None) -> None:
        from tuitune.core.serving.chat import ChatError

        pane, session = self.panes[i], self.sessions[i]
        md = Markdown("", classes="msg-assistant")
        await pane.mount(md, after=after)
        stream = Markdown.get_stream(md)
        self.busy += 1
        try:
            agen = session.regenerate() if prompt is None else session.send(prompt)
            async for delta in agen:
                await stream.write(delta)
                pane.scroll_end(animate=False)
        except ChatError as e:
            await pane.mount(Markdown(f"**Error:** {e}\n\nPress Ctrl+R to restart the server.", classes="msg-error"),
                             after=md)
        finally:
            await stream.stop()
            self.busy -= 1
            pane.scroll_end(animate=False)

    def action_stop(self) -> None:
        for s in self.sessions:
            s.stop()

    @work(group="chat-answers")
    async def action_regenerate(self) -> None:
        if self._turn.locked() or self._queue or not self.sessions or not self.sessions[0].history:
            return
        async with self._turn:
            await asyncio.gather(*(self._answer(i, None) for i in range(len(self.sessions))))
        self._keep()

    @work(group="chat-engine")
    async def action_restart(self) -> None:
        from tuitune.core.serving.errors import ChatError, ServingError

        if self.state == "starting":
            self.notify("The server is still starting.", severity="warning")
            return
        if self.state == "unavailable":
            return
        if self.state == "failed":  # it never started: try again from the beginning
            self.state = "starting"
            self.query_one("#chat-engine", Static).update("starting the model server again…")
            self.start_engines()
            return
        self.query_one("#chat-engine", Static).update("restarting the server…")
        for s in self.sessions:
            try:
                await s.backend.restart()
            except (ChatError, ServingError) as e:
                from rich.markup import escape

                self.query_one("#chat-engine", Static).update(f"[red]{escape(str(e))}[/red]")
                return
        self.query_one("#chat-engine", Static).update("server restarted; send your message again")

    # ---- closing the loop --------------------------------------------------------------------------------
    def action_save_seed(self) -> None:
        from tuitune.tui.screens.save_exchange import SaveExchange

        if not self.sessions or not self.sessions[0].last_exchange:
            self.notify("Nothing to save yet: ask something first.", severity="warning")
            return
        session = self.sessions[0]  # the tuned model's (the first column)
        prompt, answer = session.last_exchange

        def saved(sample) -> None:
            if sample is not None:
                self.notify(f"Saved as {sample.origin} #{sample.id}; it will teach the next round and run.")

        self.app.push_screen(SaveExchange(prompt, answer, history=session.history[:-1]), saved)

    def action_back(self) -> None:
        self.action_stop()
        self.app.pop_screen()
