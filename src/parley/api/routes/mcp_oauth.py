"""Connecting an MCP server configured ``credentials = "oauth"``: MCP's authorization flow.

``POST /api/mcp/servers/{name}/oauth/start`` answers the caller's authorization URL; the
authorization server sends the browser back to ``GET /api/mcp/oauth/callback`` (the redirect
URI, on ``PARLEY_PUBLIC_URL`` or else the request's own base URL), which finishes the flow the
``state`` names (:mod:`parley.tools.mcp_oauth_flows`) and stores the tokens for the user who
started it. The browser comes back from another site, so it brings no session cookie: the
single-use, expiring state is what ties the callback to its user, and a callback that carries
a token of another user is refused.
"""

from __future__ import annotations

import html
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from mcp.client.auth import AuthorizationCodeResult

from parley.api.deps import CurrentUser, ServicesDep, bearer_token
from parley.api.openapi import Responses
from parley.api.routes.mcp_servers import configured_server
from parley.api.schemas import McpOAuthStartOut
from parley.errors import ValidationFailed
from parley.tools.mcp_oauth import CALLBACK_PATH
from parley.tools.mcp_oauth_flows import FLOW_TTL

router = APIRouter(tags=["mcp"])

# Bounded so that the longest URL they allow (each character percent-encoded UTF-8, 12 bytes)
# stays under what uvicorn parses (64 KiB): a longer one is uvicorn's own plain-text 400.
Code = Annotated[str | None, Query(max_length=2048)]
Short = Annotated[str | None, Query(max_length=512)]


def redirect_uri(request: Request, s: ServicesDep) -> str:
    """The callback's URL, as the authorization server must send the browser to it."""
    base = s.settings.public_url or str(request.base_url).rstrip("/")
    return f"{base}{CALLBACK_PATH}"


@router.post("/api/mcp/servers/{name}/oauth/start")
async def start(name: str, request: Request, user: CurrentUser, s: ServicesDep) -> McpOAuthStartOut:
    """Start the caller's authorization of parley with OAuth server ``name``: open the URL it
    answers in a browser; once the server sends it back here, the caller's calls of that
    server use their own tokens."""
    config = configured_server(s, name)
    if not config.oauth:
        raise ValidationFailed(f"the MCP server {config.name!r} is not configured for OAuth")
    url = await s.oauth.start(user, config, redirect_uri(request, s))
    return McpOAuthStartOut(authorization_url=url, expires_in=int(FLOW_TTL))


# A page for the browser when the flow is finished; a refusal is parley's JSON error, as
# everywhere (documented as such: with response_class=HTMLResponse it would read as HTML).
CONNECTED: Responses = {
    200: {"description": "The server is connected", "content": {"text/html": {}}}
}


@router.get(CALLBACK_PATH, responses=CONNECTED)
async def callback(
    request: Request,
    s: ServicesDep,
    state: Annotated[str, Query(min_length=1, max_length=512)],
    code: Code = None,
    iss: Short = None,
    error: Short = None,
) -> HTMLResponse:
    """Where the authorization server sends the browser back: finish the flow of ``state``."""
    result: AuthorizationCodeResult | str
    if code is not None:
        result = AuthorizationCodeResult(code=code, state=state, iss=iss)
    else:
        result = error or "no code"
    server = await s.oauth.finish(state, result, await _caller(request, s))
    return HTMLResponse(_connected_page(server), headers={"Cache-Control": "no-store"})


async def _caller(request: Request, s: ServicesDep) -> str | None:
    """The user a bearer token on the callback names (a client finishing the flow itself)."""
    token = bearer_token(request)
    return None if token is None else (await s.verifier.verify(token)).user_id


def _connected_page(server: str) -> str:
    name = html.escape(server)
    return (
        "<!doctype html><meta charset=utf-8><title>Connected</title>"
        f"<p>parley is connected to the MCP server <b>{name}</b> with your account."
        " You can close this page.</p>"
    )
