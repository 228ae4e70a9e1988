"""One-time sign-in links, as Jupyter prints them: how the page signs in without a pasted token.

When parley signs tokens with its own secret, ``parley serve`` prints
``Sign in: http://127.0.0.1:8000/?signin=CODE``, and ``parley signin-link`` prints another. The
code is random (256 bits), stored only as its sha256, expires after :data:`CODE_TTL` seconds and
is redeemed once, by ``POST /api/auth/signin-link``, for a bearer token. No route gives a token
for a user name it is merely given: signing in this way takes reading parley's console or running
its command line against its database.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from datetime import timedelta

from parley.config import Settings
from parley.errors import Unauthenticated
from parley.store import Store
from parley.store.db import create_engine, session_factory
from parley.store.signin_codes import SigninCodes
from parley.store.values import utcnow

CODE_TTL = 600.0
SESSION_TTL = 86_400  # the token the page gets, as `parley token` gives by default


def digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def link(base_url: str, code: str) -> str:
    """The page's address with the code: ``http://127.0.0.1:8000/?signin=CODE``."""
    return f"{base_url.rstrip('/')}/?signin={code}"


async def issue(store: Store, user_id: str, *, ttl: float = CODE_TTL) -> str:
    """A new code signing in ``user_id``; only its digest is stored, the code is returned once."""
    code = secrets.token_urlsafe(32)
    await SigninCodes(store).add(digest(code), user_id, utcnow() + timedelta(seconds=ttl))
    return code


async def redeem(store: Store, code: str) -> str:
    """The user the code signs in, using the code up; 401 for a code used, expired or wrong."""
    user = await SigninCodes(store).take(digest(code))
    if user is None:
        raise Unauthenticated(
            "this sign-in link was used, has expired or is wrong;"
            " `parley signin-link` prints a new one"
        )
    return user


def issue_apart(settings: Settings, user_id: str, *, ttl: float = CODE_TTL) -> str:
    """:func:`issue` from the command line, a process apart from the server (blocking; the
    database must be migrated)."""

    async def issue_once() -> str:
        engine = create_engine(settings.effective_database_url, pool_size=1, max_overflow=0)
        store = Store(session_factory(engine))
        try:
            return await issue(store, user_id, ttl=ttl)
        finally:
            await store.close()

    return asyncio.run(issue_once())
