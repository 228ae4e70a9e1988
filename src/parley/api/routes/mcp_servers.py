"""The configured MCP servers, and each user's own credential for the per-user ones.

A credential is sealed before it is stored (:mod:`parley.credentials`) and no route returns
it: ``GET`` says only whether the caller has connected a server.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from parley.api.deps import CurrentUser, ServicesDep
from parley.api.schemas import McpCredentialBody, McpServerOut
from parley.config import McpServerConfig
from parley.credentials import credential_headers
from parley.errors import NotFound, ValidationFailed
from parley.tools.mcp_users import CREDENTIALS_ROUTE

router = APIRouter(prefix="/api/mcp/servers", tags=["mcp"])


def _server(s: ServicesDep, name: str) -> McpServerConfig:
    for config in s.settings.mcp_servers:
        if config.enabled and config.name == name:
            return config
    raise NotFound(f"no MCP server named {name[:100]!r} is configured")


def _per_user(s: ServicesDep, name: str) -> McpServerConfig:
    config = _server(s, name)
    if not config.per_user:
        raise ValidationFailed(
            f"the MCP server {config.name!r} is shared: it takes no credential of a user's"
        )
    return config


def _out(s: ServicesDep, config: McpServerConfig, connected: set[str]) -> McpServerOut:
    tools = sum(1 for tool in s.tools.all() if tool.server == config.name)
    return McpServerOut(
        name=config.name,
        credentials=config.credentials,
        connected=config.name in connected if config.per_user else True,
        tools=tools,
        connect=f"PUT {CREDENTIALS_ROUTE.format(name=config.name)}" if config.per_user else None,
    )


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
    await s.credentials.put(user, config.name, credential_headers(body.bearer, body.headers))
    return _out(s, config, {config.name})


@router.delete("/{name}/credentials", status_code=204)
async def delete_credentials(name: str, user: CurrentUser, s: ServicesDep) -> Response:
    """Forget the caller's credential for ``name`` (404 when they have none)."""
    config = _per_user(s, name)
    if not await s.credentials.delete(user, config.name):
        raise NotFound(f"you have no credential for the MCP server {config.name!r}")
    return Response(status_code=204)
