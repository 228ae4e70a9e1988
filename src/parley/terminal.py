"""``parley chat``: a terminal client over the native API.

It streams replies as they are made, shows tool calls with a spinner while they run, asks y/n for
approvals, fills a tool's questions (elicitations) field by field, and resumes a dropped stream
from its last event id. Commands: ``/new``, ``/list``, ``/switch ID``, ``/stop``, ``/quit``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from typing import Any

import httpx
from httpx_sse import EventSource, connect_sse
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.status import Status
from rich.table import Table

from parley.auth import issue_token
from parley.config import Settings, ensure_jwt_secret

HELP = "/new  /list  /switch ID  /stop  /quit   (Ctrl+C stops a reply, Ctrl+D quits)"
RESUME_ATTEMPTS = 5

Stream = Callable[[], AbstractContextManager[EventSource]]


class ApiError(Exception):
    """parley answered with an error (its ``{"error": {code, message}}`` shape)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def resolve_token(user: str) -> str:
    """``PARLEY_TOKEN`` when set, else a token for ``user`` signed with the local secret."""
    token = os.environ.get("PARLEY_TOKEN", "").strip()
    if token:
        return token
    return issue_token(ensure_jwt_secret(Settings()), user)


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    response.read()
    try:
        error = response.json().get("error") or {}
    except ValueError:
        error = {}
    message = error.get("message") or response.reason_phrase or "request failed"
    raise ApiError(response.status_code, error.get("code", f"HTTP_{response.status_code}"), message)


class ParleyClient:
    """The native API, synchronously, with one bearer token."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(30.0, read=None),
        )

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.request(method, path, json=body)
        _raise_for(response)
        return None if response.status_code == 204 else response.json()

    @contextmanager
    def stream(
        self, method: str, path: str, body: dict[str, Any] | None = None, last_id: str | None = None
    ) -> Iterator[EventSource]:
        headers = {"Accept": "text/event-stream"}
        if last_id:
            headers["Last-Event-ID"] = last_id
        with connect_sse(self.http, method, path, json=body, headers=headers) as source:
            _raise_for(source.response)
            yield source

    def close(self) -> None:
        self.http.close()


class Reply:
    """Prints one run's events as they come, and asks the person when a tool needs them."""

    def __init__(self, chat: Chat) -> None:
        self.chat = chat
        self.console = chat.console
        self.run_id: str | None = None
        self.last_id: str | None = None
        self.finished = False
        self.mid_line = False
        self.status: Status | None = None

    # output helpers -------------------------------------------------------------------------

    def spin(self, text: str) -> None:
        self.stop_spinning()
        self.status = self.console.status(text, spinner="dots")
        self.status.start()

    def stop_spinning(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None

    def line(self, markup: str) -> None:
        self.stop_spinning()
        if self.mid_line:
            self.console.print()
            self.mid_line = False
        self.console.print(markup, highlight=False)

    def write(self, text: str, style: str | None = None) -> None:
        self.stop_spinning()
        self.console.print(text, end="", style=style, markup=False, highlight=False, soft_wrap=True)
        self.mid_line = not text.endswith("\n")

    # events ---------------------------------------------------------------------------------

    def handle(self, kind: str, data: dict[str, Any]) -> None:
        handler = getattr(self, f"on_{kind}", None)
        if handler is not None:
            handler(data)

    def on_start(self, data: dict[str, Any]) -> None:
        self.run_id = data.get("run_id", self.run_id)
        self.spin("thinking…")

    def on_content(self, data: dict[str, Any]) -> None:
        self.write(data.get("content", ""))

    def on_reasoning(self, data: dict[str, Any]) -> None:
        self.write(data.get("content", ""), style="dim italic")

    def on_tool_call_start(self, data: dict[str, Any]) -> None:
        name = escape(data.get("tool_name", "tool"))
        self.line(f"[cyan]⚙ {name}[/cyan] [dim]{escape(_short(data.get('args')))}[/dim]")
        self.spin(f"running {name}…")

    def on_tool_progress(self, data: dict[str, Any]) -> None:
        if self.status is not None:
            self.status.update(
                f"{escape(data.get('tool_name', 'tool'))}: {escape(data.get('message', ''))}"
            )

    def on_tool_result(self, data: dict[str, Any]) -> None:
        name = escape(data.get("tool_name", "tool"))
        self.line(f"[green]✓ {name}[/green] [dim]→ {escape(_short(data.get('result')))}[/dim]")
        self.spin("thinking…")

    def on_tool_error(self, data: dict[str, Any]) -> None:
        name = escape(data.get("tool_name", "tool"))
        self.line(f"[red]✗ {name}:[/red] {escape(str(data.get('error', '')))}")
        self.spin("thinking…")

    def on_tool_approval_required(self, data: dict[str, Any]) -> None:
        self.line("")
        name = data.get("tool_name", "tool")
        args = json.dumps(data.get("args", {}), indent=2, ensure_ascii=False)
        self.console.print(Panel(escape(args), title=f"approve {escape(name)}?", expand=False))
        answer = self.chat.choose(f"Run {name}? [y]es / [n]o / [a]lways", "yna")
        body: dict[str, Any] = {"approved": answer != "n"}
        if answer == "a":
            body["remember"] = "tool"
        self.chat.answer(f"/api/runs/{self.run_id}/approvals/{data['tool_call_id']}", body)
        self.console.print(
            "[green]approved[/green]" if body["approved"] else "[yellow]denied[/yellow]"
        )

    def on_tool_approval_resolved(self, data: dict[str, Any]) -> None:
        if data.get("approved"):
            self.spin(f"running {escape(data.get('tool_name', 'tool'))}…")

    def on_elicitation(self, data: dict[str, Any]) -> None:
        self.line(f"[magenta]? {escape(data.get('message', 'A tool asks:'))}[/magenta]")
        action = {"y": "accept", "n": "decline", "c": "cancel"}[
            self.chat.choose("Answer? [y]es / [n]o (decline) / [c]ancel", "ync")
        ]
        body: dict[str, Any] = {"action": action}
        if action == "accept":
            body["content"] = fill_form(data.get("requested_schema") or {}, self.chat.ask)
        self.chat.answer(f"/api/runs/{self.run_id}/elicitations/{data['elicitation_id']}", body)
        self.spin("running…")

    def on_awaiting_input(self, data: dict[str, Any]) -> None:
        self.stop_spinning()

    def on_error(self, data: dict[str, Any]) -> None:
        error = data.get("error") or {}
        self.line(f"[red]error: {escape(str(error.get('message', 'the reply failed')))}[/red]")
        self.finished = True

    def on_notice(self, data: dict[str, Any]) -> None:
        self.stop_spinning()
        self.line(f"[yellow]{escape(str(data.get('message', '')))}[/yellow]")

    def on_done(self, data: dict[str, Any]) -> None:
        used = (data.get("tokensUsed") or {}).get("total", 0)
        note = " · stopped" if data.get("finish_reason") == "cancelled" else ""
        self.line(f"[dim]· {used} tokens{note}[/dim]")
        self.finished = True


class Chat:
    """The read-eval-print loop: prompts, commands, and one reply at a time."""

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

    # asking the person ----------------------------------------------------------------------

    def ask(self, prompt: str) -> str:
        return self.console.input(prompt)

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
            self.switch(self.conversation)
        while True:
            try:
                line = self.ask("[bold cyan]you>[/bold cyan] ")
            except EOFError:
                self.console.print()
                return
            except KeyboardInterrupt:
                self.console.print()
                continue
            if line.strip().startswith("/"):
                if not self.command(line.strip()):
                    return
            elif line.strip():
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
        page = self.client.call("GET", "/api/conversations?limit=20")
        table = Table("id", "title", "updated", box=None, header_style="bold")
        for convo in page["items"]:
            mark = "*" if convo["id"] == self.conversation else ""
            table.add_row(
                convo["id"] + mark, convo.get("title") or "", (convo.get("updated_at") or "")[:16]
            )
        self.console.print(table if page["items"] else "[dim]no conversations yet[/dim]")

    def switch(self, conversation_id: str) -> None:
        convo = self.client.call("GET", f"/api/conversations/{conversation_id}?limit=10")
        self.conversation = convo["id"]
        self.console.print(
            f"[bold]{escape(convo.get('title') or 'untitled')}[/bold] [dim]{convo['id']}[/dim]"
        )
        for message in convo["messages"]:
            text = "".join(p.get("text", "") for p in message["parts"] if p.get("type") == "text")
            who = "you" if message["role"] == "user" else "parley"
            self.console.print(f"[dim]{who}:[/dim] {escape(text)}")
        if convo.get("active_run_id"):
            self.console.print("[dim]a reply is still running; following it[/dim]")
            events = f"/api/runs/{convo['active_run_id']}/events"
            self.follow(Reply(self), partial(self.client.stream, "GET", events))

    def stop(self) -> None:
        if not self.conversation:
            return
        convo = self.client.call("GET", f"/api/conversations/{self.conversation}?limit=1")
        run_id = convo.get("active_run_id")
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
            reply = Reply(self)
            reply.spin("thinking…")
            self.follow(reply, partial(self.client.stream, "POST", path, body))
        except ApiError as exc:
            self.console.print(f"[red]{escape(str(exc))}[/red]")

    def follow(self, reply: Reply, open_stream: Stream) -> None:
        """Read the run to its end: Ctrl+C cancels it; a dropped connection resumes."""
        attempts = 0
        while True:
            try:
                self.read(reply, open_stream)
            except KeyboardInterrupt:
                reply.stop_spinning()
                if reply.run_id:
                    self.client.call("POST", f"/api/runs/{reply.run_id}/cancel")
            except httpx.TransportError:
                attempts += 1
                reply.spin(f"reconnecting (attempt {attempts})…")
                time.sleep(0.5 * attempts)
            if reply.finished or reply.run_id is None or attempts > RESUME_ATTEMPTS:
                break
            open_stream = partial(
                self.client.stream,
                "GET",
                f"/api/runs/{reply.run_id}/events",
                last_id=reply.last_id,
            )
        reply.stop_spinning()
        if not reply.finished:
            reply.line("[red]the connection to parley was lost[/red]")

    def read(self, reply: Reply, open_stream: Stream) -> None:
        with open_stream() as source:
            for sse in source.iter_sse():
                if sse.data == "[DONE]":
                    reply.finished = True
                    return
                if sse.id:
                    reply.last_id = sse.id
                reply.handle(sse.event, json.loads(sse.data))


def fill_form(schema: dict[str, Any], ask: Callable[[str], str]) -> dict[str, Any]:
    """Ask for each field of a flat JSON schema in turn; returns the typed answers."""
    required = set(schema.get("required") or [])
    content: dict[str, Any] = {}
    for name, prop in (schema.get("properties") or {}).items():
        value = _ask_field(name, prop or {}, name in required, ask)
        if value is not None:
            content[name] = value
    return content


def _ask_field(name: str, prop: dict[str, Any], required: bool, ask: Callable[[str], str]) -> Any:
    label = prop.get("title") or name
    choices = prop.get("enum")
    hints = [f"one of {', '.join(map(str, choices))}"] if choices else []
    if prop.get("type") == "boolean":
        hints.append("y/n")
    if "default" in prop:
        hints.append(f"default {prop['default']}")
    hints.append("required" if required else "optional")
    while True:
        raw = ask(f"  {escape(label)} [dim]({escape('; '.join(hints))})[/dim]: ").strip()
        if not raw:
            if "default" in prop:
                return prop["default"]
            if not required:
                return None
            continue
        try:
            return _coerce(raw, prop)
        except ValueError:
            continue


def _coerce(raw: str, prop: dict[str, Any]) -> Any:
    kind = prop.get("type")
    if kind == "boolean":
        if raw.lower()[:1] not in ("y", "n", "t", "f"):
            raise ValueError(raw)
        return raw.lower()[:1] in ("y", "t")
    value: Any = int(raw) if kind == "integer" else float(raw) if kind == "number" else raw
    if prop.get("enum") and value not in prop["enum"]:
        raise ValueError(raw)
    return value


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
