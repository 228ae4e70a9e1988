"""The progress socket: ``WS /ws/{user_id}/chat?token=<JWT>`` (or the page's session cookie).

It closes with 4401 for a missing or bad token (or a cookie sent from another site's page) and 4403 when ``{user_id}`` is not the token's
``sub``. Otherwise it sends ``connection_established``, then progress messages
(:mod:`parley.protocols.ws`) for every run of that user, whichever door and whichever process
started it. Each message about a run has ``event_id``, ``"{run_id}:{seq}"``; a client that
reconnects with ``?last_event_id=<the last one it saw>`` first gets what it missed: the rest of
that run and the runs the user started after it (from the run log, while the hub keeps it).
``?conversation_id=`` names the conversation the page shows: ``connection_established`` echoes it,
and a chat message sent without one goes there (an unknown one is an ``error`` message, then a
close with 4404).

A client may send ``{"type": "message", "content": "...", "conversation_id"?}`` to chat over the
socket (the ``todo`` profile, as on ``POST /api/{user_id}/chat``); the reply arrives as progress
messages, ``agent_done`` carrying its text. A message the socket cannot take (not JSON, over
``max_body_bytes``, over the limits of a message) or a bad ``last_event_id`` is answered with an
``error`` message, and the socket stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.types import Message

from parley.accounts import COOKIE
from parley.api.deps import Services, caller
from parley.auth import Principal
from parley.engine.requests import TurnRequest
from parley.errors import Forbidden, NotFound, ParleyError, Unauthenticated, ValidationFailed
from parley.protocols import ws as progress
from parley.runs.fanout import RunRef
from parley.wire import LONE_SURROGATE, holds_lone_surrogate

router = APIRouter(tags=["progress"])

PROFILE = "todo"


def parse_cursor(value: str | None) -> tuple[str, int] | None:
    """``"{run_id}:{seq}"`` (a message's ``event_id``) as ``(run_id, seq)``."""
    if value is None:
        return None
    run_id, _, seq = value.rpartition(":")
    if not run_id or not seq.isdigit() or len(seq) > 18:
        raise ValidationFailed('last_event_id must be an event_id, "<run_id>:<number>"')
    return run_id, int(seq)


class _Socket:
    """One accepted socket: sends are serialized, the user is known."""

    def __init__(
        self,
        websocket: WebSocket,
        services: Services,
        caller: Principal,
        conversation_id: str | None = None,
    ) -> None:
        self.websocket = websocket
        self.services = services
        self.caller = caller
        self.user_id = caller.user_id
        self.conversation_id = conversation_id
        self._lock = asyncio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        async with self._lock:
            await self.websocket.send_json(message)

    async def follow(self, runs: AsyncIterator[RunRef], cursor: tuple[str, int] | None) -> None:
        """Relay every run ``runs`` announces; first the rest of the run ``cursor`` names."""
        async with asyncio.TaskGroup() as group:
            if cursor is not None:
                group.create_task(self.resume(*cursor))
            async for ref in runs:
                group.create_task(self.relay(ref))

    async def resume(self, run_id: str, seq: int) -> None:
        try:
            run = await self.services.store.reach_run(self.caller, run_id)
        except NotFound as exc:
            await self.send(progress.client_error(exc.message, exc.code))
            return
        await self.relay(RunRef(run.id, run.conversation_id), after=seq)

    async def relay(self, ref: RunRef, after: int = 0) -> None:
        """The run's progress messages with an id above ``after``, from the run log. The log is
        read from its start: the messages count tools and gather the reply's text."""
        encoder = progress.ProgressEncoder(run_id=ref.run_id, conversation_id=ref.conversation_id)
        try:
            async for seq, event in self.services.runs.events(self.caller, ref.run_id):
                for message in encoder.encode(event):
                    if seq > after:
                        await self.send({**message, "event_id": f"{ref.run_id}:{seq}"})
        except NotFound as exc:  # the caller left the run's project meanwhile
            await self.send(progress.client_error(exc.message, exc.code))

    async def receive(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            try:
                await self.handle(self._json(message))
            except ParleyError as exc:
                await self.send(progress.client_error(exc.message, exc.code))

    def _json(self, message: Message) -> Any:
        """A received text or binary message as JSON, under the limit of a request body."""
        raw: str | bytes = message.get("text") or message.get("bytes") or b""
        limit = self.services.settings.max_body_bytes
        if len(raw) > limit or len(raw.encode() if isinstance(raw, str) else raw) > limit:
            raise ValidationFailed(f"the message is over {limit} bytes")
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise ValidationFailed("messages must be JSON objects") from None
        if holds_lone_surrogate(data):
            raise ValidationFailed(LONE_SURROGATE)
        return data

    async def handle(self, data: Any) -> None:
        if not isinstance(data, dict) or data.get("type") != "message":
            await self.send(progress.client_error('send {"type": "message", "content": "..."}'))
            return
        content = data.get("content")
        if not isinstance(content, str) or not content.strip():
            await self.send(progress.client_error("content must be a non-empty string"))
            return
        s = self.services
        request = TurnRequest(content=content, profile=PROFILE)
        s.engine.check(request)  # before a new conversation is written
        conversation_id = data.get("conversation_id") or self.conversation_id
        if conversation_id is not None:
            await s.runs.start(self.caller, str(conversation_id), request)
            return
        convo = await s.store.create_conversation(
            self.user_id, profile=PROFILE, metadata={"source": "ws"}
        )
        await s.runs.start(self.caller, convo.id, request)


async def _authenticate(websocket: WebSocket, services: Services, user_id: str) -> Principal | None:
    try:
        principal = await _caller(websocket, services)
    except (Unauthenticated, Forbidden) as exc:
        await websocket.close(code=4401, reason=exc.message[:120])
        return None
    if principal.user_id != user_id:
        await websocket.close(code=4403, reason="this socket belongs to another user")
        return None
    await services.store.ensure_user(user_id)
    return principal


async def _caller(websocket: WebSocket, services: Services) -> Principal:
    """``?token=``, else the bearer header, else the page's session cookie; a browser always
    names the ``Origin`` of a socket, and a cookie opens only those of parley's own page."""
    token = websocket.query_params.get("token", "")
    if token:
        return await services.verifier.verify(token)
    if COOKIE in websocket.cookies and "origin" not in websocket.headers:
        raise Forbidden("a socket signed in by cookie must come from parley's page")
    return await caller(websocket, services, "GET")


async def _named_conversation(socket: _Socket) -> bool:
    """Whether the conversation the URL names is the user's (told and closed with 4404 if not)."""
    if socket.conversation_id is None:
        return True
    try:
        await socket.services.store.reach(socket.caller, socket.conversation_id)
    except NotFound as exc:
        await socket.send(progress.client_error(exc.message, exc.code))
        await socket.websocket.close(code=4404, reason="no such conversation")
        return False
    return True


async def _cursor(socket: _Socket) -> tuple[str, int] | None:
    try:
        return parse_cursor(socket.websocket.query_params.get("last_event_id"))
    except ValidationFailed as exc:
        await socket.send(progress.client_error(exc.message, exc.code))
        return None


@router.websocket("/ws/{user_id}/chat")
async def progress_socket(websocket: WebSocket, user_id: str) -> None:
    services: Services = websocket.app.state.services
    await websocket.accept()
    principal = await _authenticate(websocket, services, user_id)
    if principal is None:
        return
    named = websocket.query_params.get("conversation_id") or None
    socket = _Socket(websocket, services, principal, named)
    if not await _named_conversation(socket):
        return
    cursor = await _cursor(socket)
    since = cursor[0] if cursor is not None else None
    async with services.fanout.follow(user_id, since) as runs:
        await socket.send(progress.connection_established(user_id, named))
        tasks = [
            asyncio.create_task(socket.follow(runs, cursor)),
            asyncio.create_task(socket.receive()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*tasks, return_exceptions=True)
