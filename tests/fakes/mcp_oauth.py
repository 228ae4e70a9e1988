"""An OAuth-protected MCP server over streamable HTTP on a real socket: the ``mcp`` SDK's
``MCPServer`` with its own authorization server (``mcp.server.auth``), whose provider here keeps
everything in memory.

``/authorize`` sends the browser to a ``/login`` page of the server's, which signs in whoever the
browser's ``X-Login`` header names (the test's stand-in for a person typing a password) and
redirects straight back to the client with a code. The one tool, ``whoami``, answers with the
subject of the access token its request carried and that token's number, so a test sees whose
token was used and whether it was a refreshed one.

``expire(subject)`` makes the server refuse every access token issued so far to ``subject``
(as if their time was up); their refresh tokens still work.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import uvicorn
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    RefreshToken,
    construct_redirect_uri,
)
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions
from mcp.server.mcpserver import MCPServer
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

LOGIN_HEADER = "X-Login"


@dataclass
class Issued:
    """One access token the server issued: its number, its subject, how it was granted."""

    number: int
    subject: str
    grant: str


@dataclass
class OAuthProvider:
    """An in-memory ``OAuthAuthorizationServerProvider`` (the SDK's protocol)."""

    base: str = ""
    expires_in: int = 3600
    clients: dict[str, OAuthClientInformationFull] = field(default_factory=dict)
    requests: dict[str, tuple[str, AuthorizationParams]] = field(default_factory=dict)
    codes: dict[str, AuthorizationCode] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshToken] = field(default_factory=dict)
    access_tokens: dict[str, AccessToken] = field(default_factory=dict)
    issued: list[Issued] = field(default_factory=list)

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        return self.clients.get(client_id)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        assert client_info.client_id is not None
        self.clients[client_info.client_id] = client_info

    async def authorize(
        self, client: OAuthClientInformationFull, params: AuthorizationParams
    ) -> str:
        request = secrets.token_urlsafe(16)
        self.requests[request] = (client.client_id or "", params)
        return f"{self.base}/login?request={request}"

    def sign_in(self, request: str, subject: str) -> str:
        """The redirect back to the client, with a code for ``subject``."""
        client_id, params = self.requests.pop(request)
        code = AuthorizationCode(
            code=secrets.token_urlsafe(32),
            scopes=params.scopes or [],
            expires_at=time.time() + 300,
            client_id=client_id,
            code_challenge=params.code_challenge,
            redirect_uri=params.redirect_uri,
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            resource=params.resource,
            subject=subject,
        )
        self.codes[code.code] = code
        return construct_redirect_uri(str(params.redirect_uri), code=code.code, state=params.state)

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> AuthorizationCode | None:
        return self.codes.get(authorization_code)

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: AuthorizationCode
    ) -> OAuthToken:
        del self.codes[authorization_code.code]
        return self._issue(client, authorization_code, "authorization_code")

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> RefreshToken | None:
        found = self.refresh_tokens.get(refresh_token)
        return found if found is not None and found.client_id == client.client_id else None

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: RefreshToken, scopes: list[str]
    ) -> OAuthToken:
        del self.refresh_tokens[refresh_token.token]  # rotated: each refresh token works once
        return self._issue(client, refresh_token, "refresh_token")

    async def load_access_token(self, token: str) -> AccessToken | None:
        found = self.access_tokens.get(token)
        if found is None or (found.expires_at is not None and found.expires_at < time.time()):
            return None
        return found

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        self.access_tokens.pop(token.token, None)
        self.refresh_tokens.pop(token.token, None)

    def expire(self, subject: str) -> None:
        for token in self.access_tokens.values():
            if token.subject == subject:
                token.expires_at = 0

    def _issue(
        self,
        client: OAuthClientInformationFull,
        grant: AuthorizationCode | RefreshToken,
        kind: str,
    ) -> OAuthToken:
        assert grant.subject is not None
        number = len(self.issued) + 1
        self.issued.append(Issued(number, grant.subject, kind))
        access, refresh = f"at{number}-{secrets.token_urlsafe(24)}", secrets.token_urlsafe(32)
        common = {"client_id": client.client_id or "", "scopes": grant.scopes}
        self.access_tokens[access] = AccessToken(
            token=access,
            expires_at=int(time.time()) + self.expires_in,
            resource=grant.resource,
            subject=grant.subject,
            claims={"number": number},
            **common,
        )
        self.refresh_tokens[refresh] = RefreshToken(
            token=refresh, resource=grant.resource, subject=grant.subject, **common
        )
        return OAuthToken(
            access_token=access,
            expires_in=self.expires_in,
            refresh_token=refresh,
            scope=" ".join(grant.scopes) or None,
        )


@dataclass
class OAuthWhoami:
    """The running server: its MCP URL, its provider, and the ``whoami`` calls it answered."""

    url: str = ""
    provider: OAuthProvider = field(default_factory=OAuthProvider)
    calls: list[str] = field(default_factory=list)

    def refreshes(self, subject: str) -> int:
        return sum(
            1 for i in self.provider.issued if i.subject == subject and i.grant == "refresh_token"
        )


def _app(base: str, state: OAuthWhoami) -> MCPServer:
    provider = state.provider
    server = MCPServer(
        "oauth-whoami",
        log_level="WARNING",
        auth_server_provider=provider,
        auth=AuthSettings(
            issuer_url=base,  # type: ignore[arg-type]
            resource_server_url=f"{base}/mcp",  # type: ignore[arg-type]
            validate_token_resource=True,
            client_registration_options=ClientRegistrationOptions(
                enabled=True, valid_scopes=["mcp"], default_scopes=["mcp"]
            ),
            required_scopes=["mcp"],
        ),
    )

    @server.tool(description="Whose access token the server got, and which one.")
    def whoami() -> str:
        token = get_access_token()
        assert token is not None and token.claims is not None
        answer = f"subject={token.subject} token={token.claims['number']}"
        state.calls.append(answer)
        return answer

    @server.custom_route("/login", methods=["GET"])
    async def login(request: Request) -> Response:
        subject = request.headers.get(LOGIN_HEADER)
        pending = request.query_params.get("request", "")
        if not subject or pending not in provider.requests:
            return PlainTextResponse("sign in first", status_code=401)
        return RedirectResponse(provider.sign_in(pending, subject), status_code=302)

    return server


@asynccontextmanager
async def serve_oauth_whoami() -> AsyncIterator[OAuthWhoami]:
    """The server on a free loopback port, in the caller's event loop."""
    listener = socket.create_server(("127.0.0.1", 0))  # connections queue until it serves
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    whoami = OAuthWhoami(url=f"{base}/mcp")
    whoami.provider.base = base
    app = _app(base, whoami).streamable_http_app(host="127.0.0.1")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        yield whoami
    finally:
        server.should_exit = True
        await task
        listener.close()
