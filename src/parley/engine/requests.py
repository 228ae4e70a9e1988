"""What a door asks the engine for (:class:`TurnRequest`) and the turn it gets back
(:class:`PreparedTurn`): the values the engine, its tool runner and the run manager share."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal

from parley.chat.messages import Part
from parley.chat.usage import TokenUsage
from parley.engine.toolset import ToolSet
from parley.limits import Reservation
from parley.providers.registry import ResolvedModel
from parley.store.values import Message


@dataclass
class TurnContext:
    """A turn's view of its conversation's past; :meth:`ContextWindow.fit` fills the rest."""

    summary: str | None = None
    summary_message_id: str | None = None  # the summary's message, on this branch
    summary_depth: int = -1  # its depth (-1: no summary)
    sent_tokens: int = 0  # the last request, as counted (before calibration)
    oldest_sent: Message | None = None  # the oldest stored message the model saw
    left_out: int = 0  # messages of the branch the model saw neither nor in the summary


Mode = Literal["send", "regenerate", "edit", "continue"]
CancelReason = Literal["cancel", "timeout", "shutdown"]


@dataclass
class TurnRequest:
    """What a door asks the engine for; every door builds one of these.

    ``mode="continue"`` adds a reply after the active leaf with no new user message (a client
    that ran tools itself sent their results). ``external_tools`` are ``{name, description,
    parameters}`` specs the model sees but parley does not run: a step that calls one ends the
    run with ``finish_reason="tool_calls"`` (the OpenAI door hands the calls to its client).
    """

    content: str | None = None
    parts: list[Part] = field(default_factory=list)
    mode: Mode = "send"
    parent_id: str | None = None
    target_id: str | None = None
    model: str | None = None
    provider: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    profile: str | None = None
    servers: list[str] | None = None
    approve_all: bool = False
    external_tools: list[dict[str, Any]] | None = None


@dataclass
class PreparedTurn:
    """One turn, committed and ready to run: its ids, model, history and tools, and what the
    run adds as it goes (its reply's parts, step, usage and cost)."""

    run_id: str
    user_id: str  # the user the conversation's rows are kept under (the store's statements')
    conversation_id: str
    user_message_id: str | None
    message_id: str
    model: ResolvedModel
    temperature: float | None
    max_tokens: int | None
    system: str | None
    history: list[Message]
    tools: ToolSet
    max_steps: int
    side_effects: list[dict[str, Any]] = field(default_factory=list)
    parts: list[Part] = field(default_factory=list)
    step: int = 0
    usage: TokenUsage = field(default_factory=TokenUsage)
    cancel_reason: CancelReason | None = None
    reservation: Reservation | None = None
    cost: float = 0.0
    # Resolved once the first model request is on the wire, or will not be (see RunManager.start).
    asked: asyncio.Future[None] | None = None
    context: TurnContext = field(default_factory=TurnContext)  # the summary, what was sent
    # a member who asked for the turn in a project's conversation kept under another user:
    # the run's tools act for them, their budget and their remembered approvals count
    actor: str | None = None

    @property
    def acting_user(self) -> str:
        """Who the turn acts for: its tools' user, budget and approval rules."""
        return self.actor or self.user_id

    def model_asked(self) -> None:
        if self.asked is not None and not self.asked.done():
            self.asked.set_result(None)
