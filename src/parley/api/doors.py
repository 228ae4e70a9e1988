"""What the doors for existing clients share: finding the conversation a client's chat id names
(the caller's own, or a project's they are a member of: :meth:`parley.store.Store.reach`),
recording the results of tools a client ran, and cutting a run's event stream into the part one
HTTP response carries. A conversation found here is kept under ``Conversation.user_id``: the
store's statements about it take that user, whoever of a project's members asks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from parley.api.deps import Services
from parley.auth import Principal
from parley.chat import events as ev
from parley.errors import NotFound, ValidationFailed
from parley.store.values import Conversation, Role

Events = AsyncIterator[tuple[int, ev.EngineEvent]]


async def conversation_for(
    s: Services,
    caller: Principal,
    key: str | None,
    *,
    source: str,
    **fields: Any,
) -> Conversation:
    """The conversation a chat request named ``key`` writes in (see :func:`find_conversation`:
    a project's needs ``write``), or the caller's own, created and marked with
    ``metadata.source`` on first use."""
    found = await find_conversation(s, caller, key, "write") if key else None
    if found is not None:
        return found
    return await s.store.create_conversation(
        caller.user_id, external_id=key, metadata={"source": source}, **fields
    )


async def find_conversation(
    s: Services, caller: Principal, key: str, need: Role = "read"
) -> Conversation | None:
    """The conversation whose id is ``key`` that the caller reaches with ``need`` (a member
    below it: :class:`~parley.errors.Forbidden`), or else the caller's own whose client-side id
    (``external_id``) is ``key``. Another user's conversation is never found."""
    if key.startswith("conv_"):
        try:
            return (await s.store.reach(caller, key, need)).conversation
        except NotFound:
            pass
    return await s.store.find_conversation_by_external(caller.user_id, key)


async def record_tool_outputs(
    s: Services,
    user: str,
    conversation_id: str,
    message_id: str,
    outputs: dict[str, Any],
    *,
    refusal: str,
    every: bool = False,
) -> None:
    """The client ran tools the model called in reply ``message_id``: their results go into
    its tool parts. :class:`ValidationFailed` (``refusal``) when it is not a reply, when no
    output answers one of its calls, or, with ``every``, when one answers none."""
    message = await s.store.get_message(user, conversation_id, message_id)
    parts = [p.copy() for p in message.parts]
    unanswered = set(outputs)
    for part in parts:
        if part["type"] == "dynamic-tool" and part.get("toolCallId") in unanswered:
            part.update({"state": "output-available", "output": outputs[part["toolCallId"]]})
            unanswered.discard(part["toolCallId"])
    answered = len(unanswered) < len(outputs)
    if message.role != "assistant" or not answered or (every and unanswered):
        raise ValidationFailed(refusal.format(unanswered=", ".join(sorted(unanswered))))
    await s.store.checkpoint(user, message.id, parts)


async def run_awaiting(s: Services, user: str, run_id: str) -> bool:
    return (await s.store.get_run(user, run_id)).status == "awaiting"


async def until_suspended(
    events: Events, is_current: Callable[[], Awaitable[bool]] | None = None
) -> Events:
    """The events of one response: up to the run's end, or to a suspension (a run waiting for a
    person holds no stream). ``is_current`` tells a past suspension, already answered, from the
    one the run is in now; without it the first suspension ends the response."""
    try:
        async for seq, event in events:
            yield seq, event
            if isinstance(event, ev.RunSuspended) and (is_current is None or await is_current()):
                return
    finally:
        await _close(events)


async def continuation(events: Events, starts_after: Callable[[ev.EngineEvent], bool]) -> Events:
    """The events after the first one matching ``starts_after`` (the suspension or question an
    answer continues from). A log that does not begin with ``RunStarted`` was reopened after a
    restart and holds only the continuation: all of it is yielded."""
    started, first = False, True
    try:
        async for seq, event in events:
            if started:
                yield seq, event
            elif first and not isinstance(event, ev.RunStarted):
                started = True
                yield seq, event
            else:
                started = starts_after(event)
            first = False
    finally:
        await _close(events)


async def nothing() -> Events:
    """An empty event stream (a response with nothing to continue)."""
    empty: list[tuple[int, ev.EngineEvent]] = []
    for item in empty:
        yield item


async def _close(events: Events) -> None:
    close = getattr(events, "aclose", None)
    if close is not None:
        await close()
