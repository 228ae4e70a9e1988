"""The progress socket: ``WS /ws/{user_id}/chat?token=<JWT>``.

It closes with 4401 for a missing or bad token and 4403 when ``{user_id}`` is not the token's
``sub``. Otherwise it sends ``connection_established``, then progress messages
(:mod:`parley.protocols.ws`) for every run of that user driven by this process, whichever door
started it. A client may send ``{"type": "message", "content": "...", "conversation_id"?}`` to
chat over the socket (the ``todo`` profile, as on ``POST /api/{user_id}/chat``); the reply
arrives as progress messages, ``agent_done`` carrying its text. A message the socket cannot take
(not JSON, over ``max_body_bytes``, over the limits of a message) is answered with an ``error``
message, and the socket stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.types import Message

from parley.api.deps import Services
from parley.chat.events import is_terminal
from parley.engine.turn import TurnRequest
from parley.errors import ParleyError, Unauthenticated, ValidationFailed
from parley.protocols import ws as progress
from parley.runs.fanout import Item, UserFanout
from parley.wire import LONE_SURROGATE, holds_lone_surrogate

router = APIRouter(tags=["progress"])

PROFILE = "todo"


class _Socket:
    """One accepted socket: sends are serialized, the user is known."""

    def __init__(self, websocket: WebSocket, services: Services, user_id: str) -> None:
        self.websocket = websocket
        self.services = services
        self.user_id = user_id
        self._lock = asyncio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        async with self._lock:
            await self.websocket.send_json(message)

    async def forward(self, queue: asyncio.Queue[Item]) -> None:
        encoders: dict[str, progress.ProgressEncoder] = {}
        while True:
            run_id, conversation_id, event = await queue.get()
            encoder = encoders.setdefault(
                run_id, progress.ProgressEncoder(run_id=run_id, conversation_id=conversation_id)
            )
            for message in encoder.encode(event):
                await self.send(message)
            if is_terminal(event):
                encoders.pop(run_id, None)

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
        s, user = self.services, self.user_id
        request = TurnRequest(content=content, profile=PROFILE)
        s.engine.check(request)  # before a new conversation is written
        if data.get("conversation_id") is not None:
            convo = await s.store.get_conversation(user, str(data["conversation_id"]))
        else:
            convo = await s.store.create_conversation(
                user, profile=PROFILE, metadata={"source": "ws"}
            )
        await s.runs.start(user, convo.id, request)


async def _authenticate(websocket: WebSocket, services: Services, user_id: str) -> bool:
    token = websocket.query_params.get("token", "")
    if not token:
        scheme, _, rest = websocket.headers.get("authorization", "").partition(" ")
        token = rest.strip() if scheme.lower() == "bearer" else ""
    try:
        principal = await services.verifier.verify(token)
    except Unauthenticated as exc:
        await websocket.close(code=4401, reason=exc.message[:120])
        return False
    if principal.user_id != user_id:
        await websocket.close(code=4403, reason="this socket belongs to another user")
        return False
    await services.store.ensure_user(user_id)
    return True


@router.websocket("/ws/{user_id}/chat")
async def progress_socket(websocket: WebSocket, user_id: str) -> None:
    services: Services = websocket.app.state.services
    await websocket.accept()
    if not await _authenticate(websocket, services, user_id):
        return
    socket = _Socket(websocket, services, user_id)
    fanout = UserFanout.of(services.runs)
    queue = fanout.subscribe(user_id)
    tasks: list[asyncio.Task[None]] = []
    try:
        await socket.send(progress.connection_established(user_id))
        tasks += [asyncio.create_task(socket.forward(queue)), asyncio.create_task(socket.receive())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        fanout.unsubscribe(user_id, queue)
        for task in tasks:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*tasks, return_exceptions=True)
