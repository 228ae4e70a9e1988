"""Users' own credentials for MCP servers configured ``credentials = "per_user"`` or ``"oauth"``.

A credential is a bearer token or a set of HTTP headers, or the grant of MCP's OAuth flow (its
tokens, the client parley registered, the server's metadata). It is sealed with Fernet
(AES-128-CBC and HMAC-SHA256) before it reaches the database, and opened only to connect the
user's own MCP session (:mod:`parley.tools.mcp_users`) or to refresh its tokens: no route
returns it and no log line carries it.

The keys come from ``PARLEY_SECRET_KEY``: comma-separated, newest first. Each is stretched into a
Fernet key with HKDF-SHA256; the first seals, every one opens (``MultiFernet``), and at start-up
the rows sealed with an older key are sealed again with the first (docs/deploy.md, "Backups").
"""

from __future__ import annotations

import base64
import json

import structlog
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import ValidationError

from parley.config import Settings
from parley.errors import ConfigError
from parley.store.base import StoreBase
from parley.store.credentials import McpCredentials
from parley.tools.mcp_oauth import OAuthGrant
from parley.tools.mcp_users import CredentialUnreadable

log = structlog.get_logger("parley.credentials")

_INFO = b"parley mcp credentials v1"


def fernet_key(secret: str) -> bytes:
    """A Fernet key derived from one of ``PARLEY_SECRET_KEY``'s keys."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO)
    return base64.urlsafe_b64encode(derived.derive(secret.encode()))


class SecretBox:
    """Seals with the newest key, opens with any."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ConfigError("PARLEY_SECRET_KEY is not set: per-user credentials need it")
        self._fernets = [Fernet(fernet_key(key)) for key in keys]
        self._all = MultiFernet(self._fernets)

    def seal(self, plaintext: bytes) -> str:
        return self._all.encrypt(plaintext).decode()

    def open(self, sealed: str) -> bytes:
        try:
            return self._all.decrypt(sealed.encode())
        except InvalidToken as exc:
            raise CredentialUnreadable("no key of PARLEY_SECRET_KEY opens it") from exc

    def is_current(self, sealed: str) -> bool:
        """Whether the newest key sealed it."""
        try:
            self._fernets[0].decrypt(sealed.encode())
        except InvalidToken:
            return False
        return True


def credential_headers(bearer: str | None, headers: dict[str, str] | None) -> dict[str, str]:
    """The HTTP headers a credential stands for: ``Authorization: Bearer …`` or the headers."""
    if bearer is not None:
        return {"Authorization": f"Bearer {bearer}"}
    return dict(headers or {})


class CredentialVault:
    """Each user's MCP credentials: sealed on the way in, opened for their own sessions only
    (the :class:`~parley.tools.mcp_users.CredentialSource` of per-user MCP servers, and the
    :class:`~parley.tools.mcp_oauth.GrantStore` of OAuth ones).

    Without ``PARLEY_SECRET_KEY`` there is no box; the settings refuse a per-user server then,
    so nothing ever asks this vault to seal or open.
    """

    def __init__(self, store: StoreBase, box: SecretBox | None) -> None:
        self.rows = McpCredentials(store)
        self._box = box

    @classmethod
    def from_settings(cls, settings: Settings, store: StoreBase) -> CredentialVault:
        return cls(store, SecretBox(settings.secret_keys) if settings.secret_keys else None)

    @property
    def box(self) -> SecretBox:
        if self._box is None:
            raise ConfigError("PARLEY_SECRET_KEY is not set: per-user credentials need it")
        return self._box

    async def put(self, user_id: str, server: str, headers: dict[str, str]) -> None:
        sealed = self.box.seal(json.dumps(headers, sort_keys=True).encode())
        await self.rows.put(user_id, server, sealed)

    async def delete(self, user_id: str, server: str) -> bool:
        return await self.rows.delete(user_id, server)

    async def connected(self, user_id: str) -> dict[str, str]:
        """The servers ``user_id`` has given a credential for, with its kind (``headers`` or
        ``oauth``)."""
        return await self.rows.servers(user_id)

    async def headers(self, user_id: str, server: str) -> dict[str, str] | None:
        """``user_id``'s headers for ``server``; None when they have not connected it."""
        sealed = await self.rows.sealed(user_id, server)
        if sealed is None:
            return None
        opened = json.loads(self.box.open(sealed))
        return {str(name): str(value) for name, value in opened.items()}

    async def put_grant(self, user_id: str, server: str, grant: OAuthGrant) -> None:
        sealed = self.box.seal(grant.model_dump_json(exclude_none=True).encode())
        await self.rows.put(user_id, server, sealed, kind="oauth")

    async def grant(self, user_id: str, server: str) -> OAuthGrant | None:
        """``user_id``'s OAuth grant for ``server``; None when they have not connected it."""
        sealed = await self.rows.sealed(user_id, server, kind="oauth")
        if sealed is None:
            return None
        opened = self.box.open(sealed)
        try:
            return OAuthGrant.model_validate_json(opened)
        except ValidationError as exc:
            raise CredentialUnreadable("the stored grant has a shape no longer read") from exc

    async def rotate(self) -> int:
        """Seal again with the newest key what an older key sealed; how many rows changed."""
        if self._box is None:
            return 0
        changed = 0
        for row in await self.rows.every_row():
            if self._box.is_current(row.sealed):
                continue
            try:
                plaintext = self._box.open(row.sealed)
            except CredentialUnreadable:
                log.warning("mcp_credential_unreadable", user_id=row.user_id, server=row.server)
                continue
            changed += await self.rows.reseal(row, self._box.seal(plaintext))
        if changed:
            log.info("mcp_credentials_resealed", count=changed)
        return changed
