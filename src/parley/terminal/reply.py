"""One run's events as the terminal shows them, and the questions a tool asks the person."""

from __future__ import annotations

import json
from typing import Any, Protocol

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from parley.terminal.api import Event
from parley.terminal.forms import fill_form
from parley.terminal.output import Output


class Person(Protocol):
    """Who answers a tool's questions (the chat loop)."""

    def ask(self, prompt: str) -> str: ...

    def choose(self, prompt: str, letters: str) -> str: ...

    def answer(self, path: str, body: dict[str, Any]) -> None: ...


class Reply:
    """Prints one run's events as they come, and asks the person when a tool needs them."""

    def __init__(self, person: Person, console: Console) -> None:
        self.person = person
        self.console = console
        self.out = Output(console)
        self.run_id: str | None = None
        self.last_id: str | None = None
        self.finished = False

    def handle(self, kind: str, data: Event) -> None:
        handler = getattr(self, f"on_{kind}", None)
        if handler is not None:
            handler(data)

    def on_start(self, data: Event) -> None:
        self.run_id = data.get("run_id", self.run_id)
        self.out.spin("thinking…")

    def on_content(self, data: Event) -> None:
        self.out.stream("content", data.get("content", ""))

    def on_reasoning(self, data: Event) -> None:
        self.out.stream("reasoning", data.get("content", ""))

    def on_tool_call_start(self, data: Event) -> None:
        name = escape(data.get("tool_name", "tool"))
        self.out.line(f"[cyan]⚙ {name}[/cyan] [dim]{escape(_short(data.get('args')))}[/dim]")
        self.out.spin(f"running {name}…")

    def on_tool_progress(self, data: Event) -> None:
        if self.out.status is not None:
            name, message = data.get("tool_name", "tool"), data.get("message", "")
            self.out.status.update(f"{escape(name)}: {escape(message)}")

    def on_tool_result(self, data: Event) -> None:
        name = escape(data.get("tool_name", "tool"))
        self.out.line(f"[green]✓ {name}[/green] [dim]→ {escape(_short(data.get('result')))}[/dim]")
        self.out.spin("thinking…")

    def on_tool_error(self, data: Event) -> None:
        name = escape(data.get("tool_name", "tool"))
        self.out.line(f"[red]✗ {name}:[/red] {escape(str(data.get('error', '')))}")
        self.out.spin("thinking…")

    def on_tool_approval_required(self, data: Event) -> None:
        self.out.close()
        name = data.get("tool_name", "tool")
        args = json.dumps(data.get("args", {}), indent=2, ensure_ascii=False)
        self.console.print(Panel(escape(args), title=f"approve {escape(name)}?", expand=False))
        answer = self.person.choose(f"Run {name}? [y]es / [n]o / [a]lways", "yna")
        body: dict[str, Any] = {"approved": answer != "n"}
        if answer == "a":
            body["remember"] = "tool"
        self.person.answer(f"/api/runs/{self.run_id}/approvals/{data['tool_call_id']}", body)
        self.console.print(
            "[green]approved[/green]" if body["approved"] else "[yellow]denied[/yellow]"
        )

    def on_tool_approval_resolved(self, data: Event) -> None:
        if data.get("approved"):
            self.out.spin(f"running {escape(data.get('tool_name', 'tool'))}…")

    def on_elicitation(self, data: Event) -> None:
        self.out.line(f"[magenta]? {escape(data.get('message', 'A tool asks:'))}[/magenta]")
        action = {"y": "accept", "n": "decline", "c": "cancel"}[
            self.person.choose("Answer? [y]es / [n]o (decline) / [c]ancel", "ync")
        ]
        body: dict[str, Any] = {"action": action}
        if action == "accept":
            body["content"] = fill_form(data.get("requested_schema") or {}, self.person.ask)
        self.person.answer(f"/api/runs/{self.run_id}/elicitations/{data['elicitation_id']}", body)
        self.out.spin("running…")

    def on_awaiting_input(self, data: Event) -> None:
        self.out.close()

    def on_error(self, data: Event) -> None:
        message = (data.get("error") or {}).get("message") or "the reply failed"
        self.out.line(f"[red]error: {escape(str(message))}[/red]")
        self.finished = True

    def on_notice(self, data: Event) -> None:
        self.out.line(f"[yellow]{escape(data.get('message', ''))}[/yellow]")

    def on_done(self, data: Event) -> None:
        """A finished reply's tokens; a stopped one's too, and that it was stopped."""
        used = data.get("tokensUsed")
        note = " · stopped" if data.get("finish_reason") == "cancelled" else ""
        self.out.line(f"[dim]· {used['total'] if used else 0} tokens{note}[/dim]")
        self.finished = True


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"
