"""The read-eval-print loop of ``parley chat``: prompts, commands, and one reply at a time."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import partial
from typing import Any

import httpx
from httpx_sse import EventSource
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from parley.terminal.api import ApiError, Message, ParleyClient, resolve_token
from parley.terminal.keys import Interrupts, typing_shown
from parley.terminal.output import Rendered, all_blocks
from parley.terminal.reply import Reply

HELP = "/new  /list  /switch ID  /stop  /quit   (Ctrl+C stops a reply, Ctrl+D quits)"
RESUME_ATTEMPTS = 5
ENDINGS = {"cancelled": "stopped", "interrupted": "interrupted (parley stopped)"}

Stream = Callable[[], AbstractContextManager[EventSource]]


class Chat:
    """The loop, and the person it asks (a :class:`~parley.terminal.reply.Person`)."""

    def __init__(
        self,
        client: ParleyClient,
        console: Console,
        *,
        conversation: str | None = None,
        model: str | None = None,
        profile: str | None = None,
    ) -> None:
        self.client = client
        self.console = console
        self.conversation = conversation
        self.model = model
        self.profile = profile
        self.keys = Interrupts()

    # asking the person ----------------------------------------------------------------------

    def ask(self, prompt: str) -> str:
        self.console.print(prompt, end="")
        with typing_shown(True), self.keys.wait():
            return input()

    def choose(self, prompt: str, letters: str) -> str:
        while True:
            answer = self.ask(f"{escape(prompt)}: ").strip().lower()[:1]
            if answer and answer in letters:
                return answer
            self.console.print(f"[dim]please answer one of: {', '.join(letters)}[/dim]")

    def answer(self, path: str, body: dict[str, Any]) -> None:
        try:
            self.client.call("POST", path, body)
        except ApiError as exc:
            self.console.print(f"[red]{escape(str(exc))}[/red]")

    # the loop -------------------------------------------------------------------------------

    def run(self) -> None:
        self.console.print(f"[dim]{escape(HELP)}[/dim]")
        if self.conversation:
            self.command(f"/switch {self.conversation}")
        while True:
            try:
                line = self.ask("[bold cyan]you>[/bold cyan] ").strip()
            except EOFError:
                self.console.print()
                return
            except KeyboardInterrupt:
                self.console.print()
                continue
            if line.startswith("/"):
                if not self.command(line):
                    return
            elif line:
                self.send(line)

    def command(self, line: str) -> bool:
        """Run a /command; False means quit."""
        name, _, arg = line.partition(" ")
        try:
            if name in ("/quit", "/exit", "/q"):
                return False
            if name == "/new":
                self.conversation = None
                self.console.print("[dim]new conversation: it starts with your next message[/dim]")
            elif name == "/list":
                self.list()
            elif name == "/switch" and arg.strip():
                self.switch(arg.strip())
            elif name == "/stop":
                self.stop()
            else:
                self.console.print(f"[dim]{escape(HELP)}[/dim]")
        except ApiError as exc:
            self.console.print(f"[red]{escape(str(exc))}[/red]")
        return True

    def list(self) -> None:
        page = self.client.conversations(limit=20)
        table = Table("id", "title", "updated", box=None, header_style="bold")
        for convo in page["items"]:
            mark = "*" if convo["id"] == self.conversation else ""
            table.add_row(
                convo["id"] + mark, convo["title"] or "", (convo["updated_at"] or "")[:16]
            )
        self.console.print(table if page["items"] else "[dim]no conversations yet[/dim]")

    def switch(self, conversation_id: str) -> None:
        """The conversation's last messages: replies rendered, a failed one's error, a stopped
        one marked; then a reply still running is followed."""
        convo = self.client.conversation(conversation_id, limit=10)
        self.conversation = convo["id"]
        title = escape(convo["title"] or "untitled")
        self.console.print(f"[bold]{title}[/bold] [dim]{convo['id']}[/dim]")
        for message in convo.get("messages", []):
            self.show(message)
        run_id = convo.get("active_run_id")
        if run_id:
            self.console.print("[dim]a reply is still running; following it[/dim]")
            self.follow(
                Reply(self, self.console), partial(self.client.stream, "GET", _events(run_id))
            )

    def show(self, message: Message) -> None:
        text = "".join(p.get("text", "") for p in message["parts"] if p["type"] == "text")
        if message["role"] == "user":
            self.console.print(f"[dim]you:[/dim] {escape(text)}")
        elif message["role"] == "assistant":
            if self.console.is_interactive:
                self.console.print("[dim]parley:[/dim]")
                self.console.print(Rendered(all_blocks(text), gap_before=False))
            else:
                self.console.print(f"[dim]parley:[/dim] {escape(text)}")
            self.ending(message)

    def ending(self, message: Message) -> None:
        """How a reply ended when it did not simply finish: its error, or that it stopped."""
        if message["status"] == "error":
            error = message.get("error") or {"code": "", "message": "the reply failed"}
            self.console.print(f"[red]✗ failed: {escape(error['message'])}[/red]")
        elif message["status"] in ENDINGS:
            self.console.print(f"[dim]· {ENDINGS[message['status']]}[/dim]")

    def stop(self) -> None:
        if not self.conversation:
            return
        run_id = self.client.conversation(self.conversation, limit=1).get("active_run_id")
        if run_id:
            self.client.call("POST", f"/api/runs/{run_id}/cancel")
        self.console.print("[dim]stopped[/dim]" if run_id else "[dim]nothing is running[/dim]")

    # a turn ---------------------------------------------------------------------------------

    def send(self, text: str) -> None:
        try:
            if self.conversation is None:
                self.conversation = self.client.call("POST", "/api/conversations", {})["id"]
            body: dict[str, Any] = {"content": text}
            if self.model:
                body["model"] = self.model
            if self.profile:
                body["profile"] = self.profile
            path = f"/api/conversations/{self.conversation}/messages"
            reply = Reply(self, self.console)
            reply.out.spin("thinking…")
            self.follow(reply, partial(self.client.stream, "POST", path, body))
        except ApiError as exc:
            self.console.print(f"[red]{escape(str(exc))}[/red]")

    def follow(self, reply: Reply, open_stream: Stream) -> None:
        """Read the run to its end: Ctrl+C cancels it; a dropped connection resumes. What the
        person types meanwhile is not echoed into the reply (Ctrl+C's ``^C`` included)."""
        attempts = 0
        with typing_shown(False), self.keys:
            try:
                while True:
                    try:
                        self.read(reply, open_stream)
                    except KeyboardInterrupt:
                        reply.out.close()
                        if reply.run_id:
                            self.client.call("POST", f"/api/runs/{reply.run_id}/cancel")
                    except httpx.TransportError:
                        attempts += 1
                        reply.out.spin(f"reconnecting (attempt {attempts})…")
                        time.sleep(0.5 * attempts)
                    if reply.finished or reply.run_id is None or attempts > RESUME_ATTEMPTS:
                        break
                    resume = partial(self.client.stream, "GET", _events(reply.run_id))
                    open_stream = partial(resume, last_id=reply.last_id)
            finally:
                reply.out.close()
        if not reply.finished:
            reply.out.line("[red]the connection to parley was lost[/red]")

    def read(self, reply: Reply, open_stream: Stream) -> None:
        with open_stream() as source:
            reply.run_id = reply.run_id or source.response.headers.get("X-Run-Id")
            events = source.iter_sse()
            while True:
                with self.keys.wait():
                    sse = next(events, None)
                if sse is None:
                    return
                if sse.data == "[DONE]":
                    reply.finished = True
                    return
                if sse.id:
                    reply.last_id = sse.id
                reply.handle(sse.event, json.loads(sse.data))


def _events(run_id: str) -> str:
    return f"/api/runs/{run_id}/events"


def run_chat(
    *,
    url: str,
    user: str,
    conversation: str | None = None,
    model: str | None = None,
    profile: str | None = None,
) -> None:
    """The ``parley chat`` command."""
    console = Console()
    client = ParleyClient(url, resolve_token(user))
    try:
        client.call("GET", "/api/conversations?limit=1")
    except httpx.TransportError as exc:
        console.print(f"[red]cannot reach parley at {escape(url)}: {escape(str(exc))}[/red]")
        raise SystemExit(1) from exc
    except ApiError as exc:
        console.print(f"[red]parley refused this client: {escape(str(exc))}[/red]")
        raise SystemExit(1) from exc
    chosen = " · ".join(x for x in (model, profile and f"profile {profile}") if x)
    console.print(
        f"[bold]parley chat[/bold] [dim]{escape(url)}{' · ' + escape(chosen) if chosen else ''}[/dim]"
    )
    try:
        Chat(client, console, conversation=conversation, model=model, profile=profile).run()
    finally:
        client.close()
