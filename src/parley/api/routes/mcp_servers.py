"""The configured MCP servers, and each user's own credential for the per-user ones.

A credential is sealed before it is stored (:mod:`parley.credentials`) and no route returns
it: ``GET`` says only whether the caller has connected a server. An OAuth server is connected
through :mod:`parley.api.routes.mcp_oauth`, and ``DELETE`` forgets its tokens too.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from parley.api.deps import CurrentUser, ServicesDep
from parley.api.schemas import McpCredentialBody, McpServerOut
from parley.config import McpServerConfig
from parley.credentials import credential_headers
from parley.errors import NotFound, ValidationFailed
from parley.tools.mcp_oauth import START_ROUTE
from parley.tools.mcp_users import CREDENTIALS_ROUTE

router = APIRouter(prefix="/api/mcp/servers", tags=["mcp"])


def configured_server(s: ServicesDep, name: str) -> McpServerConfig:
    """The enabled server named ``name`` (404 for any other name)."""
    for config in s.settings.mcp_servers:
        if config.enabled and config.name == name:
            return config
    raise NotFound(f"no MCP server named {name[:100]!r} is configured")


def _per_user(s: ServicesDep, name: str) -> McpServerConfig:
    config = configured_server(s, name)
    if not config.per_user:
        raise ValidationFailed(
            f"the MCP server {config.name!r} is shared: it takes no credential of a user's"
        )
    return config


def _out(s: ServicesDep, config: McpServerConfig, connected: dict[str, str]) -> McpServerOut:
    tools = sum(1 for tool in s.tools.all() if tool.server == config.name)
    kind = "oauth" if config.oauth else "headers"
    return McpServerOut(
        name=config.name,
        credentials=config.credentials,
        connected=connected.get(config.name) == kind if config.per_user else True,
        tools=tools,
        connect=_connect_route(config),
    )


def _connect_route(config: McpServerConfig) -> str | None:
    if config.oauth:
        return f"POST {START_ROUTE.format(name=config.name)}"
    return f"PUT {CREDENTIALS_ROUTE.format(name=config.name)}" if config.per_user else None


@router.get("")
async def list_servers(user: CurrentUser, s: ServicesDep) -> dict[str, list[McpServerOut]]:
    """Every enabled server, and for a per-user one whether the caller has connected it."""
    connected = await s.credentials.connected(user)
    return {"items": [_out(s, c, connected) for c in s.settings.mcp_servers if c.enabled]}


@router.put("/{name}/credentials")
async def put_credentials(
    name: str, body: McpCredentialBody, user: CurrentUser, s: ServicesDep
) -> McpServerOut:
    """Store (or replace) the caller's credential for per-user server ``name``; the caller's
    next tool call of that server connects with it."""
    config = _per_user(s, name)
    if config.oauth:
        raise ValidationFailed(
            f"the MCP server {config.name!r} is connected through OAuth:"
            f" POST {START_ROUTE.format(name=config.name)}"
        )
    await s.credentials.put(user, config.name, credential_headers(body.bearer, body.headers))
    return _out(s, config, {config.name: "headers"})


@router.delete("/{name}/credentials", status_code=204)
async def delete_credentials(name: str, user: CurrentUser, s: ServicesDep) -> Response:
    """Forget the caller's credential for ``name`` (404 when they have none)."""
    config = _per_user(s, name)
    if not await s.credentials.delete(user, config.name):
        raise NotFound(f"you have no credential for the MCP server {config.name!r}")
    return Response(status_code=204)
