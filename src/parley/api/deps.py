"""FastAPI dependencies, declared once as ``Annotated`` aliases."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Query, Request
from starlette.requests import HTTPConnection

from parley.accounts import COOKIE, SignIns, check_cross_site
from parley.auth import Principal, RunTickets, Verifier
from parley.config import Settings
from parley.credentials import CredentialVault
from parley.engine.turn import Engine
from parley.errors import Forbidden
from parley.metrics import Metrics
from parley.providers.registry import ProviderRegistry
from parley.runs.fanout import MemoryFanout, UserFanout
from parley.runs.manager import RunManager
from parley.store import Store
from parley.tools.mcp_oauth_flows import OAuthFlows
from parley.tools.registry import ToolRegistry


@dataclass
class Services:
    """Everything the lifespan builds; one per app."""

    settings: Settings
    store: Store
    verifier: Verifier
    providers: ProviderRegistry
    tools: ToolRegistry
    engine: Engine
    runs: RunManager
    tickets: RunTickets
    signins: SignIns
    credentials: CredentialVault
    oauth: OAuthFlows
    metrics: Metrics = field(default_factory=Metrics)
    fanout: UserFanout = field(default_factory=MemoryFanout)  # the progress socket's runs


async def get_services(request: Request) -> Services:
    """``async`` although it does not wait: FastAPI runs a plain ``def`` dependency on its
    thread pool, a round trip that cost more than the rest of the request's dependencies."""
    services: Services = request.app.state.services
    return services


def bearer_token(connection: HTTPConnection) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def current_caller(request: Request) -> Principal:
    """The caller (the one local user with ``PARLEY_AUTH=none``), made known to the store: the
    bearer token's, else the session cookie's (:func:`parley.accounts.check_cross_site`)."""
    services: Services = request.app.state.services
    principal = await caller(request, services, request.method)
    await services.store.ensure_user(principal.user_id)
    request.state.user_id = principal.user_id
    return principal


CurrentCaller = Annotated[Principal, Depends(current_caller)]


async def current_user(caller: CurrentCaller) -> str:
    """The caller's user id (:func:`current_caller`), for routes that reach only their own
    rows (a conversation or a run is reached with the whole caller: its organisation counts)."""
    return caller.user_id


async def caller(connection: HTTPConnection, services: Services, method: str) -> Principal:
    """Who sent a request or opened a socket: a bearer token when it has one, else a session
    cookie that came from parley's own page."""
    token = bearer_token(connection)
    cookie = connection.cookies.get(COOKIE)
    if token is not None or not cookie or services.settings.auth == "none":
        return await services.verifier.verify(token)
    check_cross_site(connection, method)
    return Principal(user_id=await services.signins.user_of(cookie))


TICKET_HELP = "A ticket from POST /api/runs/{run_id}/ticket, for a client that cannot send a header"


async def run_reader(
    request: Request,
    run_id: str,
    ticket: Annotated[str | None, Query(max_length=1024, description=TICKET_HELP)] = None,
) -> Principal:
    """The caller of run ``{run_id}``'s read-only stream: a ``?ticket=`` issued for that run
    (``POST /api/runs/{run_id}/ticket``), checked when given, else the bearer token."""
    if ticket is None:
        return await current_caller(request)
    services: Services = request.app.state.services
    principal = services.tickets.verify(ticket, run_id)
    request.state.user_id = principal.user_id
    return principal


ServicesDep = Annotated[Services, Depends(get_services)]
CurrentUser = Annotated[str, Depends(current_user)]
RunReader = Annotated[Principal, Depends(run_reader)]


def same_user(path_user: str, user: str) -> None:
    """Routes under ``/api/{user_id}/`` belong to the token's ``sub`` only."""
    if path_user != user:
        raise Forbidden("this route belongs to another user")


async def own_user(user_id: str, user: CurrentUser) -> str:
    """The ``{user_id}`` of a route under ``/api/{user_id}/``, when it is the caller's (a 403
    otherwise, before the body is read)."""
    same_user(user_id, user)
    return user


async def own_caller(user_id: str, caller: CurrentCaller) -> Principal:
    """:func:`own_user`, as the whole caller (for a route that reaches a conversation)."""
    same_user(user_id, caller.user_id)
    return caller


OwnUser = Annotated[str, Depends(own_user)]
OwnCaller = Annotated[Principal, Depends(own_caller)]
