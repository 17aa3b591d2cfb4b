"""Chat with the served tuned model (and the base model side by side); save an exchange as a seed."""

from __future__ import annotations

from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Markdown, Static

from tuitune.tui.events import ServerFailed, ServerReady


class ChatScreen(Screen):
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+x", "stop", "Stop answer", priority=True),  # before the input box's cut
        Binding("ctrl+g", "regenerate", "Regenerate"),
        Binding("ctrl+s", "save_seed", "Save as seed"),
        Binding("ctrl+r", "restart", "Restart server"),
        Binding("ctrl+o", "toggle_greedy", "Greedy/sampled", priority=True),
        Binding("f6", "answer_settings", "Answer settings"),
    ]

    def __init__(self, run_id: str | None = None, compare: bool = False):
        super().__init__()
        self.run_id = run_id
        self.compare = compare or bool(run_id)  # with a tuned model, show the base beside it
        self.sessions: list = []
        self.panes: list[VerticalScroll] = []
        self.busy = 0
        self.params = None  # GenParams for every model, set when the engines are ready
        self._sampled_temperature = 0.7  # what Ctrl+O goes back to after greedy

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("starting the model server (about a minute on CPU the first time)…", id="chat-engine")
        yield Horizontal(id="chat-panes")
        yield Input(placeholder="Ask the model… (Enter sends)", id="chat-input", disabled=True)
        yield Footer()

    def on_mount(self) -> None:
        self.start_engines()

    @work(thread=True, exclusive=True, group="chat-engine")
    def start_engines(self) -> None:
        from tuitune.core.models import ModelError
        from tuitune.core.serving.errors import ChatError, ServingError
        from tuitune.core.serving.pool import chat_targets

        try:
            backends = chat_targets(self.app.engines, self.run_id, with_base=self.compare)
        except (ServingError, ChatError, ModelError) as e:
            self.post_message(ServerFailed(str(e)))
            return
        self._backends = backends
        self.post_message(ServerReady(backends[0].location, [b.name for b in backends], backends[0].engine))

    @on(ServerReady)
    async def server_ready(self, event: ServerReady) -> None:
        from tuitune.core.serving.chat import ChatSession, GenParams

        self._engine_line = (f"chat with {self.run_id or 'the base model'} · engine: {event.engine} · models: "
                             f"{', '.join(event.models)} · system prompt: the task's")
        self._engine_note = self.app.engines.note if event.engine != "vllm" else ""
        self.params = GenParams()
        self._show_engine()
        panes = self.query_one("#chat-panes", Horizontal)
        for b in self._backends:
            self.sessions.append(ChatSession.for_store(self.app.store, b, params=self.params))
            col = Vertical(Static(f"[b]{b.name}[/b]", classes="pane-title"), classes="chat-col")
            await panes.mount(col)
            pane = VerticalScroll(classes="chat-pane")
            await col.mount(pane)
            self.panes.append(pane)
        box = self.query_one("#chat-input", Input)
        box.disabled = False
        box.focus()

    def _show_engine(self) -> None:
        p = self.params
        settings = (f"temperature {p.temperature:g}" + (" (greedy)" if p.temperature == 0 else "")
                    + f" · max tokens {p.max_tokens}" + (f" · seed {p.seed}" if p.seed is not None else "")
                    + (f" · stop {p.stop!r}" if p.stop else "") + " · F6 to change")
        self.query_one("#chat-engine", Static).update(
            "\n".join(x for x in (self._engine_line, settings, self._engine_note) if x))

    def _set_params(self, params) -> None:
        self.params = params
        for session in self.sessions:
            session.params = params
        self._show_engine()

    def action_toggle_greedy(self) -> None:
        """Greedy decoding (temperature 0: the same prompt always gets the same answer, handy for judging a model)
        or back to sampling at the last sampled temperature; applies from the next answer, to every model."""
        from dataclasses import replace

        if self.params is None:
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

        if self.params is None:
            self.notify("The model is still starting; settings can be changed once it is ready.", severity="warning")
            return

        def applied(params) -> None:
            if params is not None:
                self._set_params(params)

        self.app.push_screen(GenSettings(self.params), applied)

    @on(ServerFailed)
    def server_failed(self, event: ServerFailed) -> None:
        from rich.markup import escape

        # the error may carry a vLLM log tail, whose "[file.py:12]" parts are not Rich markup
        self.query_one("#chat-engine", Static).update(f"[red]cannot serve the model:[/red] {escape(event.error)}")

    @on(Input.Submitted, "#chat-input")
    def send(self, event: Input.Submitted) -> None:
        prompt = event.value.strip()
        if not prompt or self.busy:
            return
        event.input.value = ""
        for i, pane in enumerate(self.panes):
            pane.mount(Markdown(prompt, classes="msg-user"))
            self.answer(i, prompt)

    @work(group="chat-answers")
    async def answer(self, i: int, prompt: str | None) -> None:
        from tuitune.core.serving.chat import ChatError

        pane, session = self.panes[i], self.sessions[i]
        md = Markdown("", classes="msg-assistant")
        await pane.mount(md)
        stream = Markdown.get_stream(md)
        self.busy += 1
        try:
            agen = session.regenerate() if prompt is None else session.send(prompt)
            async for delta in agen:
                await stream.write(delta)
                pane.scroll_end(animate=False)
        except ChatError as e:
            await pane.mount(Markdown(f"**Error:** {e}\n\nPress Ctrl+R to restart the server.", classes="msg-error"))
        finally:
            await stream.stop()
            self.busy -= 1
            pane.scroll_end(animate=False)

    def action_stop(self) -> None:
        for s in self.sessions:
            s.stop()

    def action_regenerate(self) -> None:
        if self.busy or not self.sessions or not self.sessions[0].history:
            return
        for i in range(len(self.panes)):
            self.answer(i, None)

    @work(group="chat-engine")
    async def action_restart(self) -> None:
        from tuitune.core.serving.errors import ChatError, ServingError

        self.query_one("#chat-engine", Static).update("restarting the server…")
        for s in self.sessions:
            try:
                await s.backend.restart()
            except (ChatError, ServingError) as e:
                from rich.markup import escape

                self.query_one("#chat-engine", Static).update(f"[red]{escape(str(e))}[/red]")
                return
        self.query_one("#chat-engine", Static).update("server restarted; send your message again")

    def action_save_seed(self) -> None:
        from tuitune.tui.screens.save_exchange import SaveExchange

        if not self.sessions or not self.sessions[0].last_exchange:
            self.notify("Nothing to save yet: ask something first.", severity="warning")
            return
        prompt, answer = self.sessions[0].last_exchange

        def saved(sample) -> None:
            if sample is not None:
                self.notify(f"Saved as {sample.origin} #{sample.id}; it will teach the next round and run.")

        self.app.push_screen(SaveExchange(prompt, answer), saved)

    def action_back(self) -> None:
        self.action_stop()
        self.app.pop_screen()
