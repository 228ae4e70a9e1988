"""Who is calling: bearer JWTs verified with PyJWT (HS256 with the local secret, or asymmetric
keys from a JWKS), or, with ``PARLEY_AUTH=none``, one local user for every request; and the
short-lived run tickets a browser ``EventSource`` (which cannot send a header) follows a run with.

Algorithms are pinned per key kind, so there is no ``none`` and no HS/RS confusion: a token signed
with HS256 is never checked against a public key, and an RS256 token never against the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import anyio
import jwt

from parley.config import Settings, ensure_jwt_secret, signs_tokens
from parley.errors import Unauthenticated

HMAC_ALGORITHMS = ["HS256"]
ASYMMETRIC_ALGORITHMS = ["RS256", "ES256", "EdDSA"]
MISSING_TOKEN = "missing bearer token (Authorization: Bearer <JWT>)"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's ``sub``, and its organisation (the claim named by
    ``PARLEY_ORG_CLAIM``; None when it has none), which confines the projects it reaches."""

    user_id: str
    org_id: str | None = None


class Verifier(Protocol):
    """The caller of a request, from its bearer token (``None`` or empty: it sent none)."""

    async def verify(self, token: str | None) -> Principal: ...


class SingleUser:
    """``PARLEY_AUTH=none``: every caller is the one local user, whatever token it sends."""

    def __init__(self, user_id: str) -> None:
        self.principal = Principal(user_id=user_id)

    async def verify(self, token: str | None) -> Principal:
        return self.principal


def verifier_for(settings: Settings) -> Verifier:
    """The single local user with ``PARLEY_AUTH=none``, else the JWT verifier."""
    if settings.auth == "none":
        return SingleUser(settings.auth_none_user)
    return TokenVerifier(
        secret=ensure_jwt_secret(settings) if signs_tokens(settings) else None,
        jwks_url=settings.jwks_url,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        org_claim=settings.org_claim,
    )


class TokenVerifier:
    """Checks bearer tokens; built once from the settings.

    A token that verified is remembered (by its full text, signature included) until it
    expires, for at most ``remember_s`` seconds: a client sends the same token with every
    request, and decoding and checking it again cost about as much as reading the conversation.
    """

    remember_s = 60.0
    remember_max = 4096  # tokens are up to a few KiB: at most a few MiB of memory

    def __init__(
        self,
        *,
        secret: str | None,
        jwks_url: str | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        org_claim: str = "org_id",
    ) -> None:
        self._secret = secret
        self._org_claim = org_claim
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300) if jwks_url else None
        self._audience = audience
        self._issuer = issuer
        self._verified: dict[str, tuple[Principal, float]] = {}

    async def verify(self, token: str | None) -> Principal:
        if not token:
            raise Unauthenticated(MISSING_TOKEN)
        remembered = self._verified.get(token)
        now = time.time()
        if remembered is not None:
            if now < remembered[1]:
                return remembered[0]
            del self._verified[token]
        principal, expires = await self._verify(token)
        if len(self._verified) >= self.remember_max:
            self._verified.clear()
        self._verified[token] = (principal, min(expires, now + self.remember_s))
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated("the bearer token is not a JWT") from exc
        algorithm = header.get("alg")
        if algorithm in HMAC_ALGORITHMS and self._secret is not None:
            claims = self._decode(token, self._secret, HMAC_ALGORITHMS)
        elif algorithm in ASYMMETRIC_ALGORITHMS and self._jwks is not None:
            key = await self._signing_key(token)
            claims = self._decode(token, key, ASYMMETRIC_ALGORITHMS)
        else:
            raise Unauthenticated(f"tokens signed with {algorithm!r} are not accepted")
        subject = _claim(claims, "sub")
        if subject is None:
            raise Unauthenticated("the token has no usable 'sub' claim")
        org = _claim(claims, self._org_claim)
        expires = claims["exp"]  # required by _decode
        return Principal(user_id=subject, org_id=org), float(expires)  # type: ignore[arg-type]

    async def _signing_key(self, token: str) -> object:
        assert self._jwks is not None
        jwks = self._jwks
        try:
            signing = await anyio.to_thread.run_sync(jwks.get_signing_key_from_jwt, token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated("no key in the JWKS matches this token") from exc
        return signing.key

    def _decode(self, token: str, key: object, algorithms: list[str]) -> dict[str, object]:
        options = {"require": ["sub", "exp"], "verify_aud": self._audience is not None}
        try:
            return jwt.decode(
                token,
                key,  # type: ignore[arg-type]
                algorithms=algorithms,
                audience=self._audience,
                issuer=self._issuer,
                options=options,  # type: ignore[arg-type]
                leeway=30,
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("the token has expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated("the token is not valid") from exc


def _claim(claims: dict[str, object], name: str) -> str | None:
    """A claim that names a user or an organisation: None when absent or empty, and
    :class:`Unauthenticated` when it is not a short printable string (control characters, lone
    surrogates and bidi overrides have no place in an id)."""
    value = claims.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 255 or not value.isprintable():
        raise Unauthenticated(f"the token's {name!r} claim is not an id parley can use")
    return value


TICKET_AUDIENCE = "parley:run-events"
TICKET_TTL = 60  # seconds: long enough to open an EventSource and reconnect, at most two minutes
_TICKET_KEY_LABEL = b"parley run ticket v1"


class RunTickets:
    """Read-only tickets for one run's event stream, for clients that cannot send a header.

    A ticket is a HS256 JWT (``sub`` the user, ``org`` their organisation when they have one,
    ``run`` the run, ``aud`` :data:`TICKET_AUDIENCE`, ``exp`` at most ``ttl`` seconds on) signed
    with a key derived from parley's secret, never the secret itself: a ticket is no bearer
    token, and a bearer token is no ticket. Stateless: any instance sharing the secret
    (``PARLEY_JWT_SECRET``) accepts it. ``clock`` is for tests.
    """

    def __init__(
        self, secret: str, *, ttl: int = TICKET_TTL, clock: Callable[[], float] = time.time
    ) -> None:
        self._key = hmac.new(secret.encode(), _TICKET_KEY_LABEL, hashlib.sha256).hexdigest()
        self.ttl = ttl
        self.clock = clock

    def issue(self, caller: Principal, run_id: str) -> str:
        now = int(self.clock())
        claims: dict[str, object] = {
            "sub": caller.user_id,
            "run": run_id,
            "aud": TICKET_AUDIENCE,
            "iat": now,
            "exp": now + self.ttl,
        }
        if caller.org_id is not None:
            claims["org"] = caller.org_id
        return jwt.encode(claims, self._key, algorithm="HS256")

    def verify(self, ticket: str, run_id: str) -> Principal:
        """The ticket's user, when it is this run's and unexpired; else :class:`Unauthenticated`."""
        try:
            claims = jwt.decode(
                ticket,
                self._key,
                algorithms=HMAC_ALGORITHMS,
                audience=TICKET_AUDIENCE,
                options={"require": ["sub", "run", "exp"], "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated("the ticket is not valid") from exc
        if not isinstance(claims["exp"], int) or claims["exp"] <= self.clock():
            raise Unauthenticated("the ticket has expired; ask for a new one")
        if claims["run"] != run_id or not isinstance(claims["sub"], str):
            raise Unauthenticated("the ticket is for another run")
        org = claims.get("org")
        return Principal(user_id=claims["sub"], org_id=org if isinstance(org, str) else None)


def tickets_for(settings: Settings) -> RunTickets:
    """Run tickets signed with (a key derived from) parley's HS256 secret."""
    return RunTickets(ensure_jwt_secret(settings))


def issue_token(secret: str, user_id: str, *, ttl_seconds: int = 86_400) -> str:
    """A HS256 token for local use (``parley token``)."""
    now = int(time.time())
    claims = {"sub": user_id, "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, secret, algorithm="HS256")


def parse_ttl(value: str) -> int:
    """``90``, ``90s``, ``15m``, ``1h``, ``7d`` → seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value = value.strip().lower()
    try:
        if value and value[-1] in units:
            return int(float(value[:-1]) * units[value[-1]])
        return int(value)
    except ValueError as exc:
        raise ValueError(f"not a duration: {value!r} (use e.g. 90s, 15m, 1h, 7d)") from exc
