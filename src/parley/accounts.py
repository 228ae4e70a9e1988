"""Local accounts and the page's cookie sessions.

``parley user add NAME`` keeps an argon2 hash of the password (pwdlib). The page signs in with
``POST /api/auth/signin``, which sets a random session cookie (HttpOnly, SameSite=Strict, Secure
over https) kept server-side as its sha256 (:mod:`parley.store.accounts`): signing out deletes
the row, so a copied cookie stops working everywhere at once. A wrong password and an unknown
name get the same answer after the same work; attempts are counted per account and per client
address before any hash is checked.

Cross-site requests: a cookie is sent by the browser on its own, so a request it authorises must
come from parley's page. The cookie is SameSite=Strict; a state-changing request must also carry
:data:`CSRF_HEADER` (a header a cross-site form cannot send, and a cross-site script cannot
without a CORS preflight parley does not grant with credentials) and, when it names an
``Origin``, parley's own (:func:`same_origin`). Bearer tokens are no cookie and need neither.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar
from urllib.parse import urlsplit

import anyio
from pwdlib import PasswordHash
from starlette.requests import HTTPConnection

from parley.config import Settings
from parley.errors import Forbidden, RateLimited, Unauthenticated, ValidationFailed
from parley.limits import Attempts
from parley.store import Store
from parley.store.accounts import Accounts
from parley.store.db import create_engine, session_factory
from parley.store.values import utcnow

COOKIE = "parley_session"
CSRF_HEADER = "X-Requested-With"
SESSION_TTL = 14 * 86_400
WRONG = "wrong user name or password"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MIN_PASSWORD = 8
T = TypeVar("T")

_hasher = PasswordHash.recommended()  # argon2id
# what an unknown name's password is checked against, so that it costs what a known one's does
_DUMMY_HASH = "$argon2id$v=19$m=65536,t=3,p=4$BGHbc68LIyJrrSDAVs1xYw$LKWxfMbP5r2/YBKxpvIagp++UrIteY1FxPjSNDrqnQs"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(password: str) -> None:
    """A password parley accepts: at least :data:`MIN_PASSWORD` characters, at most 1024."""
    if len(password) < MIN_PASSWORD:
        raise ValidationFailed(f"a password has at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise ValidationFailed("a password has at most 1024 characters")


def check_name(name: str) -> None:
    if not name.strip() or len(name) > 255 or not name.isprintable():
        raise ValidationFailed(f"{name!r} cannot be a user name (1 to 255 printable characters)")


def digest(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


@dataclass(frozen=True)
class Throttle:
    """How many sign-in attempts a window admits, per account and per client address."""

    per_account: int = 10
    per_address: int = 30
    window: float = 300.0


class SignIns:
    """Passwords checked, sessions started, looked up and ended."""

    def __init__(self, store: Store, attempts: Attempts, throttle: Throttle | None = None) -> None:
        self.accounts = Accounts(store)
        self.attempts = attempts
        self.throttle = throttle or Throttle()

    async def sign_in(self, name: str, password: str, address: str) -> str:
        """A new session's cookie for a right name and password; 401 otherwise, 429 when this
        account or address tried too often."""
        await self._admit(name, address)
        stored = await self.accounts.password_hash(name)
        matches = await anyio.to_thread.run_sync(_hasher.verify, password, stored or _DUMMY_HASH)
        if stored is None or not matches:
            raise Unauthenticated(WRONG)
        cookie = secrets.token_urlsafe(32)
        expires = utcnow() + timedelta(seconds=SESSION_TTL)
        await self.accounts.start_session(digest(cookie), name, expires)
        return cookie

    async def _admit(self, name: str, address: str) -> None:
        """Count the attempt for the account and for the address, both; 429 if either is over."""
        t = self.throttle
        waits = [
            await self.attempts.attempt(f"account:{name}", t.per_account, t.window),
            await self.attempts.attempt(f"address:{address}", t.per_address, t.window),
        ]
        wait = max((w for w in waits if w is not None), default=None)
        if wait is not None:
            raise RateLimited(
                f"too many sign-in attempts; try again in {wait:.0f} s", retry_after=wait
            )

    async def user_of(self, cookie: str) -> str:
        """The user of a live session's cookie; 401 for an ended, expired or unknown one."""
        user = await self.accounts.session_user(digest(cookie))
        if user is None:
            raise Unauthenticated("your session has ended: sign in again")
        return user

    async def sign_out(self, cookie: str) -> None:
        await self.accounts.end_session(digest(cookie))


def same_origin(connection: HTTPConnection) -> bool:
    """Whether the request names no ``Origin``, or the one it was sent to (its ``Host``)."""
    origin = connection.headers.get("origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    try:
        port = parts.port or default
    except ValueError:
        return False
    host = connection.headers.get("host", "")
    target = urlsplit(f"//{host}")
    try:
        target_port = target.port or default
    except ValueError:
        return False
    return (parts.hostname, port) == (target.hostname, target_port)


def check_cross_site(connection: HTTPConnection, method: str) -> None:
    """403 for a request a cookie would authorise that another site may have sent."""
    if not same_origin(connection):
        raise Forbidden("cross-site request refused (its Origin is not this server)")
    if method not in SAFE_METHODS and not connection.headers.get(CSRF_HEADER):
        raise Forbidden(f"a request signed in by cookie must send the {CSRF_HEADER} header")


def run_apart(settings: Settings, work: Callable[[Accounts], Awaitable[T]]) -> T:
    """``work`` on the accounts from the command line, a process apart from the server
    (blocking; the database must be migrated)."""

    async def once() -> T:
        engine = create_engine(settings.effective_database_url, pool_size=1, max_overflow=0)
        store = Store(session_factory(engine))
        try:
            return await work(Accounts(store))
        finally:
            await store.close()

    return asyncio.run(once())
