"""The OAuth authorization flows users have started and not yet finished, in this process.

``start`` runs the SDK's provider against the server on a task of its own: it discovers the
authorization server, registers parley (or uses the configured client), makes the PKCE pair and
the ``state``, and hands over the authorization URL, which ``start`` returns. The task then
waits, on the SDK's ``callback_handler``, for the browser to come back to parley's callback with
a code: ``finish`` finds the flow by the ``state`` the SDK put in the URL, gives it the code, and
waits while the SDK exchanges it and opens a session with the new tokens, which the flow's
:class:`~parley.tools.mcp_oauth.GrantStorage` saved for the user who started it.

The state is the SDK's (256 random bits), bound here to the user and the server; a flow is
finished once, by its state, within ``FLOW_TTL`` seconds, and a callback that carries a token of
another user is refused. The PKCE verifier lives in the SDK's flow, so the callback must reach
the process that started it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import mcp_types as types
import structlog
from mcp import Client
from mcp.client.auth import AuthorizationCodeResult
from mcp.client.streamable_http import streamable_http_client

from parley import __version__
from parley.config import McpServerConfig
from parley.errors import Forbidden, McpAuthorizationFailed, ValidationFailed
from parley.tools.mcp_oauth import (
    GrantStorage,
    GrantStore,
    OAuthGrant,
    provider_for,
    reusable_client,
)
from parley.tools.mcp_values import describe, http_client

log = structlog.get_logger("parley.mcp")

FLOW_TTL = 600.0
MAX_FLOWS_PER_USER = 5
START_TIMEOUT = 30.0


@dataclass(eq=False)
class _Flow:
    user_id: str
    server: str
    url: asyncio.Future[str] = field(default_factory=asyncio.Future)
    code: asyncio.Future[AuthorizationCodeResult] = field(default_factory=asyncio.Future)
    task: asyncio.Task[None] | None = None

    async def redirected(self, authorization_url: str) -> None:
        self.url.set_result(authorization_url)

    async def authorized(self) -> AuthorizationCodeResult:
        return await self.code


Connector = Callable[[McpServerConfig, str, httpx2.Auth], Awaitable[None]]


async def handshake(config: McpServerConfig, user: str, auth: httpx2.Auth) -> None:
    """A session opened and closed as ``user`` through ``auth``: the flow happens inside."""
    assert config.url is not None
    async with http_client({}, auth) as http:
        session = Client(
            streamable_http_client(config.url, http_client=http),
            mode="legacy",
            client_info=types.Implementation(name="parley", version=__version__),
        )
        async with session:
            pass


class OAuthFlows:
    """Flows by state; each finished once, by the state's own user, or dropped at its TTL.
    ``connect`` makes the handshake the SDK's flow runs in (the MCP server's own, which
    lists its tools through it, or :func:`handshake`)."""

    def __init__(self, store: GrantStore, connect: Connector = handshake) -> None:
        self._store = store
        self._connect = connect
        self._flows: dict[str, _Flow] = {}

    async def start(self, user_id: str, config: McpServerConfig, redirect_uri: str) -> str:
        """Start ``user_id``'s authorization with OAuth server ``config``: its URL."""
        flow = _Flow(user_id, config.name)
        flow.task = asyncio.create_task(self._run(flow, config, redirect_uri), name="mcp oauth")
        try:
            async with asyncio.timeout(max(config.timeout, START_TIMEOUT)):
                waits: list[asyncio.Future[Any]] = [flow.url, flow.task]
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            flow.task.cancel()
            raise McpAuthorizationFailed(
                f"the MCP server {config.name!r} did not answer in time"
            ) from None
        if not flow.url.done():
            raise self._failed(config.name, flow.task)
        url = flow.url.result()
        try:
            self._keep(_state_of(url), flow)
        except McpAuthorizationFailed:
            flow.task.cancel()
            raise
        return url

    async def finish(
        self, state: str, result: AuthorizationCodeResult | str, caller: str | None
    ) -> str:
        """Give the flow of ``state`` its code (or the server's error), wait for the tokens;
        the server's name. ``caller``: the user a token on the callback names, if any."""
        flow = self._flows.get(state)
        if flow is None or flow.task is None or flow.task.done():
            raise ValidationFailed("unknown or expired authorization state: start again")
        if caller is not None and caller != flow.user_id:
            raise Forbidden("this authorization was started by another user")
        del self._flows[state]
        if isinstance(result, str):
            flow.task.cancel()
            raise ValidationFailed(f"the authorization was not given ({result[:100]})")
        flow.code.set_result(result)
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await asyncio.wait([flow.task])
        except TimeoutError:
            flow.task.cancel()
            await asyncio.gather(flow.task, return_exceptions=True)
        if flow.task.cancelled() or flow.task.exception() is not None:
            raise self._failed(flow.server, flow.task)
        log.info("mcp_oauth_connected", server=flow.server, user_id=flow.user_id)
        return flow.server

    async def aclose(self) -> None:
        tasks = [f.task for f in self._flows.values() if f.task is not None]
        self._flows.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, flow: _Flow, config: McpServerConfig, redirect_uri: str) -> None:
        """The SDK's flow, driven by a session's handshake: it ends with the tokens saved."""
        assert config.url is not None
        before = await self._store.grant(flow.user_id, config.name)
        grant = OAuthGrant(client=reusable_client(config, redirect_uri, before))
        storage = GrantStorage(self._store, flow.user_id, config.name, grant)
        provider = provider_for(config, storage, redirect_uri, flow.redirected, flow.authorized)
        async with asyncio.timeout(FLOW_TTL):
            await self._connect(config, flow.user_id, provider)

    def _keep(self, state: str, flow: _Flow) -> None:
        mine = [s for s, f in self._flows.items() if f.user_id == flow.user_id]
        for old in mine[: max(len(mine) - MAX_FLOWS_PER_USER + 1, 0)]:
            dropped = self._flows.pop(old)
            if dropped.task is not None:
                dropped.task.cancel()
        self._flows[state] = flow
        assert flow.task is not None
        flow.task.add_done_callback(lambda _: self._drop(state, flow))

    def _drop(self, state: str, flow: _Flow) -> None:
        """A flow that ended (finished, failed, or at its TTL) can be finished no more."""
        if self._flows.get(state) is flow:
            del self._flows[state]
        task = flow.task
        error = None if task is None or task.cancelled() else task.exception()
        if error is not None:
            log.info("mcp_oauth_flow_ended", server=flow.server, error=describe(error))

    @staticmethod
    def _failed(server: str, task: asyncio.Task[None]) -> McpAuthorizationFailed:
        if not task.done() or task.cancelled():
            reason = "the flow was stopped"
        elif (error := task.exception()) is not None:
            reason = describe(error)
        else:
            reason = "it did not ask for an authorization"
        log.warning("mcp_oauth_failed", server=server, error=reason)
        return McpAuthorizationFailed(
            f"could not authorize parley with the MCP server {server!r}: {reason}"
        )


def _state_of(authorization_url: str) -> str:
    states = parse_qs(urlsplit(authorization_url).query).get("state", [])
    if len(states) != 1 or not states[0]:
        raise McpAuthorizationFailed("the SDK made an authorization URL without a state")
    return states[0]
