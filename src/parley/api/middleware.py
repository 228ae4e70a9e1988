"""The edge: one pure ASGI middleware (streaming-safe) that every request passes through.

It gives each request an id (echoed, and bound to its log lines), counts and times it
(:class:`parley.metrics.RequestMeter`), adds the security headers, and checks the request itself
before any route runs: a ``Host`` the server does not answer to is a 400, HTTP and WebSocket alike
(DNS rebinding: ``Settings.effective_allowed_hosts``), a body over the limit is a 413, a null byte
in the URL or a JSON body a 400 (PostgreSQL cannot store U+0000 in text, and a value that works on
SQLite but fails on PostgreSQL is worse than a clear 400), and so is a lone surrogate escaped in a
JSON body (``"\\ud800"``: no database stores it, no encoder writes it). An error no handler took
becomes a 500 naming the request id.

One layer, not four: each layer wraps ``send`` and ``receive`` again, and a stream keeps every
wrapper for as long as it is open.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

import structlog
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from parley.api.errors import http_error, unexpected_error_response
from parley.metrics import RequestMeter
from parley.wire import LONE_SURROGATE, escapes_lone_surrogate

log = structlog.get_logger("parley.api")

# A JSON ``\u0000`` escape: one not itself escaped (``\\u0000`` is a backslash, then text).
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_WITHOUT_BODY = frozenset({"GET", "HEAD", "OPTIONS"})
_DOCS = ("/docs", "/redoc")
_HOST_ALLOWED = "parley.host_allowed"  # scope key, set on a copy of the scope by HostCheck
HOST_REFUSED = (
    "this server does not answer to the name in the Host header; list it in PARLEY_ALLOWED_HOSTS"
)


class Refused(Exception):
    """The request is refused at the edge, before any route sees it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class HostCheck:
    """Whether a request's ``Host`` is one of ``allowed`` (``*``, ``*.example.com``, any port),
    as Starlette's :class:`TrustedHostMiddleware` decides; its plain-text refusal is dropped, for
    parley's error shape."""

    def __init__(self, allowed: Sequence[str]) -> None:
        self.any = "*" in allowed
        self._trusted = TrustedHostMiddleware(
            _mark_allowed, allowed_hosts=allowed, www_redirect=False
        )

    async def allows(self, scope: Scope) -> bool:
        if self.any:
            return True
        probe = dict(scope)
        await self._trusted(probe, _disconnected, _dropped)
        if probe.get(_HOST_ALLOWED):
            return True
        log.info("host_refused")
        return False


async def _mark_allowed(scope: Scope, receive: Receive, send: Send) -> None:
    scope[_HOST_ALLOWED] = True


async def _disconnected() -> Message:
    return {"type": "http.disconnect"}


async def _dropped(message: Message) -> None:
    pass


class Edge:
    """Request id, metrics, security headers, and the checks of the request's Host, URL and body.

    The interactive API docs (``/docs``, ``/redoc``) load their scripts from a CDN, so they get
    the security headers without the content security policy.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        allowed_hosts: Sequence[str],
        headers: dict[str, str],
        csp: str | None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.hosts = HostCheck(allowed_hosts)
        self.headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        self.with_csp = list(self.headers)
        if csp:
            self.with_csp.append((b"content-security-policy", csp.encode()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id, route=scope.get("path"))
        try:
            if kind == "http":
                await self._http(scope, receive, send, request_id)
            elif await self.hosts.allows(scope):
                await self.app(scope, receive, send)
            else:
                await _deny_websocket(scope, send)
        finally:
            structlog.contextvars.unbind_contextvars("request_id", "route")

    async def _http(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        path = str(scope.get("path", ""))
        added = self.headers if path.startswith(_DOCS) else self.with_csp
        id_header = (b"x-request-id", request_id.encode("latin-1"))
        meter = RequestMeter.of(scope)
        started = False

        async def edge_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in added if h[0] not in present)
                headers.append(id_header)
                message["headers"] = headers
                if meter is not None:
                    meter.response_started(message)
            await send(message)

        try:
            try:
                if not await self.hosts.allows(scope):
                    raise Refused(400, HOST_REFUSED)
                _check_url(scope)
                if scope.get("method", "GET") not in _WITHOUT_BODY:
                    receive = await self._read_body(scope, receive)
            except Refused as refused:
                await _refuse(scope, refused, edge_send)
                return
            await self.app(scope, receive, edge_send)
        except Exception:
            log.exception("unhandled_error", request_id=request_id)
            if started:
                raise
            await unexpected_error_response(request_id)(scope, receive, edge_send)
        finally:
            if meter is not None:
                meter.finish(scope)

    async def _read_body(self, scope: Scope, receive: Receive) -> Receive:
        """Read the whole body (under the limit), check it, and hand it to the app as one
        message; later ``receive`` calls (the disconnect) go to the server."""
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            raise Refused(413, f"the body is over {self.max_body_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                return _replay(message, receive)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise Refused(413, f"the body is over {self.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if _NUL_ESCAPE.search(body):
            raise Refused(400, "null bytes (U+0000) are not accepted in text")
        if escapes_lone_surrogate(body):
            raise Refused(400, LONE_SURROGATE)
        return _replay({"type": "http.request", "body": body, "more_body": False}, receive)


def _request_id(scope: Scope) -> str:
    """The client's ``X-Request-Id`` if it is printable (cut to 100 characters), else a new one."""
    for name, value in scope.get("headers") or ():
        if name == b"x-request-id":
            incoming: str = value.decode("latin-1")
            if incoming and incoming.isprintable():
                return incoming[:100]
            break
    return uuid.uuid4().hex


def _check_url(scope: Scope) -> None:
    query = scope.get("query_string", b"")
    if "\x00" in str(scope.get("path", "")) or b"%00" in query or b"\x00" in query:
        raise Refused(400, "null bytes (U+0000) are not accepted in the URL")


def _replay(first: Message, receive: Receive) -> Receive:
    pending: list[Message] = [first]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


async def _refuse(scope: Scope, refused: Refused, send: Send) -> None:
    response = http_error(str(scope.get("path", "")), refused.status, refused.message)
    await response(scope, _disconnected, send)


async def _deny_websocket(scope: Scope, send: Send) -> None:
    """Refuse the handshake with a 400 in parley's error shape where the server can send an
    HTTP response to a WebSocket (uvicorn can), else close it (uvicorn's 403)."""
    if "websocket.http.response" in scope.get("extensions", {}):
        await _refuse(scope, Refused(400, HOST_REFUSED), send)
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": "host not allowed"})
