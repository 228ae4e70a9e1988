"""Signing in with the one-time link the console printed (:mod:`parley.signin`).

The only route that answers with a token, and only for a code: no route takes a user name and
returns a token for it.
"""

from __future__ import annotations

import structlog
from fastapi import APIRouter

from parley import signin
from parley.api.deps import ServicesDep
from parley.api.schemas import SignedIn, SigninLinkCode
from parley.auth import issue_token
from parley.config import ensure_jwt_secret, signs_tokens
from parley.errors import NotFound

router = APIRouter(prefix="/api/auth", tags=["auth"])
log = structlog.get_logger("parley.api")


@router.post("/signin-link")
async def redeem_link(body: SigninLinkCode, s: ServicesDep) -> SignedIn:
    """A bearer token for the code of a sign-in link, once; a second use is a 401."""
    if not signs_tokens(s.settings):
        raise NotFound("parley signs no tokens here (PARLEY_JWKS_URL): use your identity provider")
    user = await signin.redeem(s.store, body.code)
    log.info("signed_in_with_link", user=user)
    token = issue_token(ensure_jwt_secret(s.settings), user, ttl_seconds=signin.SESSION_TTL)
    return SignedIn(token=token, user=user, expires_in=signin.SESSION_TTL)
