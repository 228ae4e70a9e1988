"""Each user's OAuth grant for an MCP server configured ``credentials = "oauth"``, used and
refreshed through the ``mcp`` SDK's own OAuth client.

The SDK's :class:`~mcp.client.auth.OAuthClientProvider` (an ``httpx2.Auth``) does the protocol:
metadata discovery, dynamic client registration, PKCE, the code exchange and the refresh.
parley gives it a :class:`~mcp.client.auth.TokenStorage` bound to one user and one server
(:class:`GrantStorage`), so the tokens it obtains or refreshes are saved, sealed, for that user
only (:class:`GrantStore`, implemented by :class:`parley.credentials.CredentialVault`).

When it loads stored tokens the SDK restores neither their expiry nor the metadata it
discovered (python-sdk issue 3250): it would send an expired token and, on the 401, ask for a
person instead of refreshing. So a session's provider is seeded, through its public
``context``, with the expiry and the metadata kept in the grant.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import NoReturn, Protocol
from urllib.parse import urlsplit

from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.shared.auth import (
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthMetadata,
    OAuthToken,
    ProtectedResourceMetadata,
)
from mcp.shared.auth_utils import calculate_token_expiry
from pydantic import AnyUrl, BaseModel, ConfigDict

from parley import __version__
from parley.config import McpServerConfig, is_loopback

CALLBACK_PATH = "/api/mcp/oauth/callback"
START_ROUTE = "/api/mcp/servers/{name}/oauth/start"

RedirectHandler = Callable[[str], Awaitable[None]]
CallbackHandler = Callable[[], Awaitable[AuthorizationCodeResult]]


class OAuthGrant(BaseModel):
    """What one user's OAuth connection to one server keeps, sealed as one value."""

    model_config = ConfigDict(frozen=True)

    tokens: OAuthToken | None = None
    expires_at: float | None = None  # a wall-clock time, as the SDK compares it
    client: OAuthClientInformationFull | None = None
    server_metadata: OAuthMetadata | None = None
    resource_metadata: ProtectedResourceMetadata | None = None


class GrantStore(Protocol):
    """Where users' grants are kept (the implementation: the credential vault)."""

    async def grant(self, user_id: str, server: str) -> OAuthGrant | None:
        """``user_id``'s grant for ``server``; None when they have not connected it."""

    async def put_grant(self, user_id: str, server: str, grant: OAuthGrant) -> None:
        """Keep ``grant`` as ``user_id``'s for ``server``, replacing the one before."""


class AuthorizationRequired(Exception):
    """The server wants the user to authorize parley again (no token it accepts, and none to
    refresh)."""


class GrantStorage:
    """The SDK's ``TokenStorage`` for one user and one server: tokens are saved to the store
    as they arrive (``on_saved`` hears of each first); a client registration only with the
    tokens it obtained."""

    def __init__(
        self,
        store: GrantStore,
        user_id: str,
        server: str,
        grant: OAuthGrant | None = None,
        on_saved: Callable[[OAuthGrant], None] | None = None,
    ) -> None:
        self.grant = grant or OAuthGrant()
        self.provider: OAuthClientProvider | None = None
        self._store = store
        self._user_id = user_id
        self._server = server
        self._on_saved = on_saved or (lambda grant: None)

    async def get_tokens(self) -> OAuthToken | None:
        return self.grant.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        context = self.provider.context if self.provider is not None else None
        self.grant = self.grant.model_copy(
            update={
                "tokens": tokens,
                "expires_at": calculate_token_expiry(tokens.expires_in),
                "server_metadata": context.oauth_metadata if context else None,
                "resource_metadata": context.protected_resource_metadata if context else None,
            }
        )
        self._on_saved(self.grant)
        await self._store.put_grant(self._user_id, self._server, self.grant)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.grant.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.grant = self.grant.model_copy(update={"client": client_info})


def client_metadata(redirect_uri: str) -> OAuthClientMetadata:
    """How parley registers itself: a web application unless its redirect URI is loopback."""
    host = urlsplit(redirect_uri).hostname or ""
    return OAuthClientMetadata(
        client_name="parley",
        software_id="parley",
        software_version=__version__,
        redirect_uris=[AnyUrl(redirect_uri)],
        application_type="native" if is_loopback(host) else "web",
    )


def configured_client(config: McpServerConfig, redirect_uri: str) -> OAuthClientInformationFull:
    """The client registered beforehand that ``client_id`` names."""
    assert config.client_id is not None
    secret = config.client_secret.get_secret_value() if config.client_secret else None
    return OAuthClientInformationFull(
        client_id=config.client_id,
        client_secret=secret,
        redirect_uris=[AnyUrl(redirect_uri)],
        token_endpoint_auth_method="client_secret_post" if secret else "none",
    )


def reusable_client(
    config: McpServerConfig, redirect_uri: str, before: OAuthGrant | None
) -> OAuthClientInformationFull | None:
    """The client to authorize as: the configured one, else the one the user registered last
    time for this redirect URI, else none (the SDK registers one)."""
    if config.client_id is not None:
        return configured_client(config, redirect_uri)
    client = before.client if before is not None else None
    if client is not None and AnyUrl(redirect_uri) in (client.redirect_uris or []):
        return client
    return None


def provider_for(
    config: McpServerConfig,
    storage: GrantStorage,
    redirect_uri: str,
    redirect_handler: RedirectHandler,
    callback_handler: CallbackHandler,
) -> OAuthClientProvider:
    """The SDK's provider for one user's connection, seeded from their stored grant."""
    assert config.url is not None
    provider = OAuthClientProvider(
        config.url,
        client_metadata(redirect_uri),
        storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )
    storage.provider = provider
    context, grant = provider.context, storage.grant
    if grant.tokens is not None:
        context.token_expiry_time = grant.expires_at
    context.oauth_metadata = grant.server_metadata
    context.protected_resource_metadata = grant.resource_metadata
    return provider


def session_provider(
    config: McpServerConfig, storage: GrantStorage, connect_hint: str
) -> OAuthClientProvider:
    """The provider of a user's session: it refreshes as the SDK does, and when only a person
    could authorize again it fails with ``connect_hint`` (a run has no browser)."""

    async def lapsed(_url: str) -> NoReturn:
        raise AuthorizationRequired(
            f"your authorization for the MCP server {config.name!r} has lapsed: {connect_hint}"
        )

    async def no_callback() -> NoReturn:
        raise AuthorizationRequired(connect_hint)

    client = storage.grant.client
    uris = client.redirect_uris if client is not None else None
    redirect_uri = str(uris[0]) if uris else f"http://localhost{CALLBACK_PATH}"
    return provider_for(config, storage, redirect_uri, lapsed, no_callback)
