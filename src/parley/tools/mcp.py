"""MCP servers from ``[[mcp_servers]]``, as parley tools.

Each configured server gets one :class:`McpServer`: an asyncio task that holds a client
session (the official ``mcp`` SDK, 2025-11-25 handshake era) open for the app's lifetime,
caches the server's tool list, lists again on ``notifications/tools/list_changed``, and
reconnects with exponential backoff when the session fails. Its tools become
:class:`McpTool` objects in the registry.

A session serves many runs at once, so an ``elicitation/create`` from the server has to find
the call that caused it. Over streamable HTTP the SDK runs the elicitation callback in the
caller's context, so a context variable names the call. Over stdio nothing ties the request
to a call; it goes to the only call in flight, or to the oldest call when every call in
flight belongs to one run, and is declined when calls of several runs are in flight.

A server configured ``credentials = "per_user"`` or ``"oauth"`` is called through each user's
own session (:mod:`parley.tools.mcp_users`); its shared session, opened with the configured
``headers`` (a service credential, or none), only lists its tools and is never used for a call.
An OAuth user's session authenticates through the SDK's OAuth provider, which refreshes the
user's tokens and saves them back for that user (:mod:`parley.tools.mcp_oauth`). An OAuth
server configured without ``headers`` has no shared session: its tools are listed through the
user sessions (and the OAuth flow's) whenever one opens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AsyncExitStack
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpx2
import mcp_types as types
import structlog
from mcp import Client, StdioServerParameters
from mcp.client.session import ClientRequestContext, IncomingMessage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from parley import __version__
from parley.config import McpServerConfig
from parley.errors import ConfigError
from parley.tools.base import Deadline, Tool, ToolContext, ToolOutput
from parley.tools.mcp_oauth import GrantStorage, OAuthGrant, session_provider
from parley.tools.mcp_users import (
    CredentialSource,
    SessionUnavailable,
    UserSession,
    UserSessions,
    connect_hint,
)
from parley.tools.mcp_values import describe, http_client, to_output, tool_hints

log = structlog.get_logger("parley.mcp")

INITIAL_BACKOFF = 0.2
MAX_BACKOFF = 30.0
RECONNECT_WAIT = 5.0
CONNECT_TIMEOUT = 10.0
MAX_PAGES = 50


@dataclass(eq=False)
class _Call:
    """One tool call in flight on a session."""

    context: ToolContext
    deadline: Deadline


_current_call: ContextVar[_Call | None] = ContextVar("parley_mcp_call", default=None)


class McpTool(Tool):
    """A tool of an MCP server. ``name`` is parley's (maybe ``server__tool``); the server
    knows it as ``remote_name``."""

    def __init__(self, server: McpServer, spec: types.Tool, *, name: str) -> None:
        hints = tool_hints(spec.annotations)
        super().__init__(
            name=name,
            description=spec.description or spec.title or "",
            input_schema=spec.input_schema or {"type": "object"},
            read_only=hints.read_only,
            server=server.name,
            requires_approval=server.needs_approval(spec.name, name),
            destructive=hints.destructive,
        )
        self.remote_name = spec.name
        self._server = server

    async def call(self, arguments: dict[str, Any], context: ToolContext) -> ToolOutput:
        return await self._server.call(self.remote_name, arguments, context)


class McpServer:
    """One configured MCP server: its session, its cached tool list, its calls."""

    def __init__(
        self,
        config: McpServerConfig,
        *,
        on_change: Callable[[], None] | None = None,
        credentials: CredentialSource | None = None,
    ) -> None:
        if (config.command is None) == (config.url is None):
            raise ConfigError(f"MCP server {config.name!r}: give either command or url")
        if config.per_user and credentials is None:
            raise ConfigError(f"MCP server {config.name!r}: per-user, but no credential store")
        self.config = config
        self._credentials = credentials
        self.users = (
            UserSessions(config, credentials, self._open_for)
            if config.per_user and credentials is not None
            else None
        )
        self.specs: list[types.Tool] = []
        self._on_change = on_change or (lambda: None)
        self._client: Client | None = None
        self._calls: list[_Call] = []
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._ready = asyncio.Event()
        self._attempted = asyncio.Event()
        self._stopping = False
        self._lost = False
        self._stale = False
        self.connections = 0
        self.refreshes = 0
        self._refreshed = asyncio.Event()

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def connect_timeout(self) -> float:
        """Starting a server (a process, a handshake) and listing its tools may take longer
        than one call is allowed."""
        return max(self.config.timeout, CONNECT_TIMEOUT)

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    def needs_approval(self, *names: str) -> bool:
        policy = self.config.require_approval
        if isinstance(policy, bool):
            return policy
        return any(name in policy for name in names)

    # lifetime ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the session task and wait (at most ``connect_timeout``) for the first attempt."""
        if self.users is not None:
            self.users.start()
        if self.config.oauth and not self.config.headers:
            self._attempted.set()  # nothing to list with but the users' own sessions
            return
        self._task = asyncio.create_task(self._run(), name=f"mcp {self.name}")
        try:
            async with asyncio.timeout(self.connect_timeout):
                await self._attempted.wait()
        except TimeoutError:
            log.warning("mcp_server_slow_to_start", server=self.name)

    async def wait_ready(self) -> bool:
        """Wait a little for a (re)connection: long enough for a restart, short of the call's
        own deadline."""
        try:
            async with asyncio.timeout(min(RECONNECT_WAIT, self.config.timeout * 0.8)):
                await self._ready.wait()
        except TimeoutError:
            return False
        return True

    async def aclose(self) -> None:
        self._stopping = True
        self._wake.set()
        if self.users is not None:
            await self.users.aclose()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            async with asyncio.timeout(10):
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        delay = INITIAL_BACKOFF
        while not self._stopping:
            before = self.connections
            try:
                await self._connect_once()
            except Exception as exc:
                log.warning("mcp_server_failed", server=self.name, error=describe(exc))
            finally:
                self._disconnected()
            if self._stopping:
                return
            if self.connections > before:
                delay = INITIAL_BACKOFF
            self._lost = False
            await self._sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)

    async def _connect_once(self) -> None:
        async with AsyncExitStack() as stack:
            client = await self._open(stack)
            await self._refresh(client)
            self._client = client
            self.connections += 1
            self._ready.set()
            self._attempted.set()
            log.info("mcp_server_connected", server=self.name, tools=len(self.specs))
            await self._serve(client)

    async def _open(
        self,
        stack: AsyncExitStack,
        headers: dict[str, str] | None = None,
        owner: str = "",
        auth: httpx2.Auth | None = None,
        *,
        patient: bool = False,
    ) -> Client:
        """A session: the shared one, or with ``headers`` (and ``auth``) the session of user
        ``owner``; ``patient`` when the handshake waits for a person (an OAuth flow)."""

        async def elicit(
            context: ClientRequestContext, params: types.ElicitRequestParams
        ) -> types.ElicitResult | types.ErrorData:
            return await self._on_elicit(context, params, owner)

        client = Client(
            await self._transport(stack, headers, auth),
            mode="legacy",
            cache=None,
            elicitation_callback=elicit,
            message_handler=self._on_message,
            client_info=types.Implementation(name="parley", version=__version__),
        )
        async with asyncio.timeout(None if patient else self.connect_timeout):
            await stack.enter_async_context(client)
        return client

    @property
    def lists_through_users(self) -> bool:
        """An OAuth server configured without ``headers``: no shared session lists its tools."""
        return self.users is not None and self.config.oauth and not self.config.headers

    async def list_as(self, user: str) -> None:
        """List the tools through ``user``'s own session (opening it lists them); nothing when
        they have not connected the server or it does not answer."""
        assert self.users is not None
        try:
            async with asyncio.timeout(self.connect_timeout), self.users.client(user):
                pass
        except Exception as exc:
            log.debug("mcp_list_as_user_failed", server=self.name, error=describe(exc))

    async def connect_as(self, user: str, auth: httpx2.Auth) -> None:
        """A handshake as ``user`` through ``auth`` (their OAuth flow: it waits while they
        authorize), listing the tools through it when there is no shared session."""
        async with AsyncExitStack() as stack:
            client = await self._open(stack, {}, user, auth, patient=True)
            if not self.connected:
                await self._refresh(client)

    async def _open_for(self, stack: AsyncExitStack, session: UserSession) -> Client:
        """A user's own session, with their credential's headers only, or their OAuth grant."""
        credential, auth = session.credential, None
        if isinstance(credential, OAuthGrant):
            assert self._credentials is not None
            storage = GrantStorage(
                self._credentials, session.user_id, self.name, credential, session.refreshed
            )
            auth = session_provider(self.config, storage, connect_hint(self.config))
            credential = {}
        try:
            client = await self._open(stack, credential, session.user_id, auth)
            if not self.connected:
                await self._refresh(client)
        except Exception as exc:
            raise SessionUnavailable(describe(exc)) from exc
        return client

    async def _transport(
        self, stack: AsyncExitStack, headers: dict[str, str] | None, auth: httpx2.Auth | None
    ) -> Any:
        config = self.config
        if config.command is not None:
            return StdioServerParameters(command=config.command, args=config.args, env=config.env)
        assert config.url is not None
        http = await stack.enter_async_context(
            http_client(config.headers if headers is None else headers, auth)
        )
        return streamable_http_client(config.url, http_client=http)

    async def _serve(self, client: Client) -> None:
        """Hold the session until parley stops or a call finds it dead; list on change."""
        while True:
            if self._stopping or self._lost:
                return
            if self._stale:
                self._stale = False
                await self._refresh(client)
                continue
            await self._wake.wait()
            self._wake.clear()

    async def _refresh(self, client: Client) -> None:
        specs: list[types.Tool] = []
        cursor: str | None = None
        async with asyncio.timeout(self.connect_timeout):
            for _ in range(MAX_PAGES):
                page = await client.list_tools(cursor=cursor)
                specs.extend(page.tools)
                cursor = page.next_cursor
                if cursor is None:
                    break
        self.specs = specs
        self._on_change()
        self.refreshes += 1
        self._refreshed.set()
        self._refreshed = asyncio.Event()

    async def wait_refresh(self, after: int) -> None:
        """Wait until the tool list has been fetched more than ``after`` times."""
        while self.refreshes <= after:
            await self._refreshed.wait()

    def _disconnected(self) -> None:
        """The tool list stays cached: a call made while reconnecting waits for the session."""
        self._client = None
        self._ready.clear()
        self._attempted.set()

    async def _sleep(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                while not self._stopping:
                    await self._wake.wait()
                    self._wake.clear()
        except TimeoutError:
            return

    def _connection_lost(self) -> None:
        if not self._stopping and not self._lost:
            log.warning("mcp_server_lost", server=self.name)
            self._lost = True
            self._wake.set()

    # session callbacks -------------------------------------------------------------------

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self._stale = True
            self._wake.set()
        elif isinstance(message, Exception):
            log.debug("mcp_transport_error", server=self.name, error=str(message))

    async def _on_elicit(
        self, context: ClientRequestContext, params: types.ElicitRequestParams, owner: str = ""
    ) -> types.ElicitResult | types.ErrorData:
        """The server asks the person something: route it to the call that caused it (on a
        user's own session, a call of that user's; on a per-user server's shared session,
        which makes no calls, to nobody)."""
        if not isinstance(params, types.ElicitRequestFormParams):
            return types.ElicitResult(action="decline")
        if self.users is not None and not owner:
            return types.ElicitResult(action="decline")
        call = _current_call.get() or self._only_call(owner)
        if call is None:
            log.warning("mcp_elicitation_unroutable", server=self.name)
            return types.ElicitResult(action="decline")
        async with call.deadline.paused():
            action, content = await call.context.elicit(params.message, params.requested_schema)
        if action not in ("accept", "decline", "cancel"):
            action = "cancel"
        return types.ElicitResult(action=action, content=content if action == "accept" else None)

    def _only_call(self, owner: str = "") -> _Call | None:
        calls = [c for c in self._calls if not owner or c.context.user_id == owner]
        runs = {(c.context.user_id, c.context.run_id) for c in calls}
        return calls[0] if len(runs) == 1 else None

    # calls -------------------------------------------------------------------------------

    async def call(self, name: str, arguments: dict[str, Any], context: ToolContext) -> ToolOutput:
        """Call ``name`` within the server's timeout (paused while a person answers)."""
        call = _Call(context=context, deadline=Deadline(self.config.timeout))
        token = _current_call.set(call)
        self._calls.append(call)
        try:
            async with call.deadline.running():
                return await self._call(name, arguments, context)
        except TimeoutError as exc:
            seconds = f"{self.config.timeout:g}"
            message = f"the MCP server {self.name!r} did not answer within {seconds} seconds"
            raise TimeoutError(message) from exc
        finally:
            self._calls.remove(call)
            _current_call.reset(token)

    async def _call(self, name: str, arguments: dict[str, Any], context: ToolContext) -> ToolOutput:
        if self.users is not None:
            return await self._call_as_user(name, arguments, context, self.users)
        if self._client is None and not await self.wait_ready():
            return ToolOutput(f"the MCP server {self.name!r} is not connected", is_error=True)
        assert self._client is not None
        return await self._call_on(self._client, name, arguments, context, self._connection_lost)

    async def _call_as_user(
        self, name: str, arguments: dict[str, Any], context: ToolContext, users: UserSessions
    ) -> ToolOutput:
        """Through the session of the run's user, opened with their own credential."""
        user = context.user_id
        try:
            async with users.client(user) as client:
                return await self._call_on(
                    client, name, arguments, context, lambda: users.lost(user)
                )
        except SessionUnavailable as exc:
            return ToolOutput(str(exc), is_error=True)

    async def _call_on(
        self,
        client: Client,
        name: str,
        arguments: dict[str, Any],
        context: ToolContext,
        lost: Callable[[], None],
    ) -> ToolOutput:
        async def progress(progress: float, total: float | None, message: str | None) -> None:
            await context.progress(message or "", progress, total)

        try:
            result = await client.call_tool(name, arguments, progress_callback=progress)
        except MCPError as exc:
            if exc.code == types.CONNECTION_CLOSED:
                lost()
                return ToolOutput(
                    f"the MCP server {self.name!r} closed the connection during the call",
                    is_error=True,
                )
            return ToolOutput(f"the MCP server {self.name!r} refused: {exc.message}", True)
        return to_output(result)
