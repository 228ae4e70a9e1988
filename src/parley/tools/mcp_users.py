"""Each user's own session with an MCP server configured ``credentials = "per_user"`` or
``"oauth"``.

A call of such a server's tool goes through the session of the run's user (never an argument
of the model's), opened with the credential that user stored (:mod:`parley.credentials`), or
their OAuth grant (:mod:`parley.tools.mcp_oauth`): sessions are keyed by (server, user), so two
users' calls never share a session or a token. The credential is read again at every call, so a
credential replaced, refreshed or deleted, through any process, takes effect at the next call:
the session of the one before is closed (a session's own refresh is not a new credential). A
session unused for ``session_idle`` seconds is closed, and at most ``max_sessions`` stay open
(the least recently used idle ones go first).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Protocol

import structlog
from mcp import Client

from parley.config import McpServerConfig
from parley.tools.mcp_oauth import START_ROUTE, OAuthGrant

log = structlog.get_logger("parley.mcp")

CREDENTIALS_ROUTE = "/api/mcp/servers/{name}/credentials"
Credential = dict[str, str] | OAuthGrant
Opener = Callable[[AsyncExitStack, "UserSession"], Awaitable[Client]]


class CredentialUnreadable(Exception):
    """A stored credential that cannot be opened any more (its key was dropped)."""


class CredentialSource(Protocol):
    """Where a user's credential for a server comes from (the implementation:
    :class:`parley.credentials.CredentialVault`)."""

    async def headers(self, user_id: str, server: str) -> dict[str, str] | None:
        """The user's HTTP headers for ``server``; None when they have not connected it.
        Raises :class:`CredentialUnreadable` when the stored one cannot be opened."""

    async def grant(self, user_id: str, server: str) -> OAuthGrant | None:
        """The user's OAuth grant for ``server``, the same way."""

    async def put_grant(self, user_id: str, server: str, grant: OAuthGrant) -> None:
        """Keep ``grant`` (tokens the SDK refreshed) as the user's for ``server``."""


class SessionUnavailable(Exception):
    """The user's session cannot serve the call; the message is for the model and the user."""


def connect_hint(config: McpServerConfig) -> str:
    if config.oauth:
        route = START_ROUTE.format(name=config.name)
        return f"connect it with POST {route} and open the authorization_url it answers"
    route = CREDENTIALS_ROUTE.format(name=config.name)
    return f'connect it with PUT {route} and a body {{"bearer": "<your token>"}}'


def credential_key(credential: Credential) -> tuple[str | None, ...]:
    """What tells one credential from another: the headers, or the grant's tokens and client."""
    if isinstance(credential, dict):
        return tuple(f"{name}: {value}" for name, value in sorted(credential.items()))
    tokens, client = credential.tokens, credential.client
    return (
        tokens.access_token if tokens else None,
        tokens.refresh_token if tokens else None,
        client.client_id if client else None,
    )


class UserSession:
    """One user's open session, held by a task of its own (the SDK's task groups must be
    entered and left in one task)."""

    def __init__(self, opener: Opener, credential: Credential, user_id: str) -> None:
        self.user_id = user_id
        self.credential = credential
        self.key = credential_key(credential)
        self.client: Client | None = None
        self.error: str | None = None
        self.in_use = 0
        self.last_used = asyncio.get_running_loop().time()
        self._opened = asyncio.Event()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._hold(opener), name="mcp user session")

    @property
    def finished(self) -> bool:
        return self._task.done() or self._stop.is_set()

    def refreshed(self, grant: OAuthGrant) -> None:
        """The session saved tokens it refreshed: the stored grant is still this session's."""
        self.credential = grant
        self.key = credential_key(grant)

    async def _hold(self, opener: Opener) -> None:
        try:
            async with AsyncExitStack() as stack:
                self.client = await opener(stack, self)
                self._opened.set()
                await self._stop.wait()
        except Exception as exc:
            self.error = str(exc) or type(exc).__name__
        finally:
            self.client = None
            self._opened.set()

    async def wait_open(self) -> Client:
        await self._opened.wait()
        if self.client is None:
            raise SessionUnavailable(self.error or "the session closed")
        return self.client

    def close(self) -> None:
        self._stop.set()

    async def aclose(self) -> None:
        self.close()
        try:
            async with asyncio.timeout(10):
                await asyncio.shield(self._task)
        except TimeoutError:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class UserSessions:
    """The open sessions of one per-user server, by user."""

    def __init__(
        self, config: McpServerConfig, credentials: CredentialSource, opener: Opener
    ) -> None:
        self.config = config
        self._credentials = credentials
        self._opener = opener
        self._sessions: OrderedDict[str, UserSession] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def __len__(self) -> int:
        return len(self._sessions)

    def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap(), name=f"mcp {self.config.name} reaper")

    @asynccontextmanager
    async def client(self, user_id: str) -> AsyncIterator[Client]:
        """``user_id``'s open session, kept open (not idle) while the block runs."""
        credential = await self._credential(user_id)
        session = self._session(user_id, credential)
        session.in_use += 1
        try:
            yield await self._wait_open(session)
        finally:
            session.in_use -= 1
            session.last_used = asyncio.get_running_loop().time()
            self._trim()

    def lost(self, user_id: str) -> None:
        """The session broke during a call: the next call opens a new one."""
        session = self._sessions.pop(user_id, None)
        if session is not None:
            self._retire(session)

    def sweep(self, now: float | None = None) -> int:
        """Close the sessions idle for ``session_idle`` seconds; how many were closed."""
        now = asyncio.get_running_loop().time() if now is None else now
        idle = [
            user
            for user, s in self._sessions.items()
            if s.in_use == 0 and (s.finished or now - s.last_used >= self.config.session_idle)
        ]
        for user in idle:
            self._retire(self._sessions.pop(user))
        return len(idle)

    async def aclose(self) -> None:
        self._stopping.set()
        if self._reaper is not None:
            await asyncio.gather(self._reaper, return_exceptions=True)
        sessions = list(self._sessions.values())
        self._sessions.clear()
        await asyncio.gather(*(s.aclose() for s in sessions), *self._closing)

    async def _credential(self, user_id: str) -> Credential:
        name = self.config.name
        try:
            credential = await self._read(user_id)
        except CredentialUnreadable as exc:
            log.warning("mcp_credential_unreadable", server=name, user_id=user_id)
            raise SessionUnavailable(
                f"your credential for the MCP server {name!r} cannot be read any more;"
                f" {connect_hint(self.config)} again"
            ) from exc
        if credential is None:
            self.lost(user_id)  # deleted meanwhile, maybe through another process
            raise SessionUnavailable(
                f"the MCP server {name!r} acts with each user's own credential, and you have"
                f" not connected it yet: {connect_hint(self.config)}"
            )
        return credential

    async def _read(self, user_id: str) -> Credential | None:
        if not self.config.oauth:
            return await self._credentials.headers(user_id, self.config.name)
        grant = await self._credentials.grant(user_id, self.config.name)
        return grant if grant is not None and grant.tokens is not None else None

    def _session(self, user_id: str, credential: Credential) -> UserSession:
        session = self._sessions.get(user_id)
        if session is not None and (session.key != credential_key(credential) or session.finished):
            self.lost(user_id)
            session = None
        if session is None:
            session = UserSession(self._opener, credential, user_id)
            self._sessions[user_id] = session
        self._sessions.move_to_end(user_id)
        return session

    async def _wait_open(self, session: UserSession) -> Client:
        name = self.config.name
        try:
            async with asyncio.timeout(max(self.config.timeout, 10.0)):
                return await session.wait_open()
        except (SessionUnavailable, TimeoutError) as exc:
            session.close()
            reason = str(exc) or "it did not answer in time"
            raise SessionUnavailable(
                f"could not connect to the MCP server {name!r} with your credential ({reason});"
                f" if it is wrong or expired, {connect_hint(self.config)}"
            ) from exc

    def _trim(self) -> None:
        """Close the least recently used idle sessions beyond ``max_sessions``."""
        excess = len(self._sessions) - self.config.max_sessions
        for user in [u for u, s in self._sessions.items() if s.in_use == 0][: max(excess, 0)]:
            self._retire(self._sessions.pop(user))

    def _retire(self, session: UserSession) -> None:
        task = asyncio.create_task(session.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _reap(self) -> None:
        while not self._stopping.is_set():
            try:
                async with asyncio.timeout(self.config.session_idle / 2):
                    await self._stopping.wait()
            except TimeoutError:
                closed = self.sweep()
                if closed:
                    log.debug("mcp_user_sessions_closed", server=self.config.name, count=closed)
