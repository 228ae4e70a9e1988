"""Signing in: with the one-time link the console printed (:mod:`parley.signin`), or with a
local account's password for a cookie session (:mod:`parley.accounts`).

The link's route is the only one that answers with a token, and only for a code: no route takes
a user name and returns a token for it. The password's route answers with a cookie only.
"""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Request, Response

from parley import accounts, signin
from parley.api.deps import CurrentUser, ServicesDep, bearer_token
from parley.api.schemas import PasswordSignIn, SessionInfo, SignedIn, SigninLinkCode
from parley.auth import issue_token
from parley.config import ensure_jwt_secret, signs_tokens
from parley.errors import NotFound, Unauthenticated

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


@router.post("/signin")
async def sign_in(
    body: PasswordSignIn, request: Request, response: Response, s: ServicesDep
) -> SessionInfo:
    """A session cookie for a local account's name and password (``parley user add``). A wrong
    password and an unknown name get the same 401; attempts are limited per account and per
    address (429). Sent from parley's page only: the X-Requested-With header, a same Origin."""
    if s.settings.auth == "none":
        raise NotFound("PARLEY_AUTH=none: every request is already the one local user")
    accounts.check_cross_site(request, "POST")
    address = request.client.host if request.client else "unknown"
    cookie = await s.signins.sign_in(body.user, body.password, address)
    log.info("signed_in_with_password", user=body.user)
    response.set_cookie(
        accounts.COOKIE,
        cookie,
        max_age=accounts.SESSION_TTL,
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return SessionInfo(user=body.user, via="session", expires_in=accounts.SESSION_TTL)


@router.post("/signout", status_code=204)
async def sign_out(request: Request, response: Response, s: ServicesDep) -> None:
    """End this page's session (its row is deleted: the cookie opens nothing any more) and
    clear its cookie; an ended session's cookie is cleared too. No session cookie: a 401."""
    cookie = request.cookies.get(accounts.COOKIE)
    if not cookie:
        raise Unauthenticated("no session to sign out of (this signs out a session cookie)")
    accounts.check_cross_site(request, "POST")
    await s.signins.sign_out(cookie)
    response.delete_cookie(
        accounts.COOKIE,
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


@router.get("/session")
async def session(request: Request, user: CurrentUser, s: ServicesDep) -> SessionInfo:
    """Who the caller is, and whether by a session cookie, a bearer token or single-user mode."""
    if s.settings.auth == "none":
        return SessionInfo(user=user, via="none")
    return SessionInfo(user=user, via="token" if bearer_token(request) else "session")
