"""Bearer JWTs: HS256 with the local secret, RS256/ES256/EdDSA from a JWKS; every bad token is a 401."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from tests.conftest import SECRET, Live, make_settings, serve, token

from parley.auth import TokenVerifier, issue_token
from parley.errors import Unauthenticated
from parley.providers.scripted import ScriptedProvider
from parley.tools.registry import ToolRegistry

KEYS = {
    "RS256": (rsa.generate_private_key(public_exponent=65537, key_size=2048), RSAAlgorithm),
    "ES256": (ec.generate_private_key(ec.SECP256R1()), ECAlgorithm),
    "EdDSA": (ed25519.Ed25519PrivateKey.generate(), OKPAlgorithm),
}


def _jwks() -> dict[str, Any]:
    keys = []
    for alg, (private, algorithm) in KEYS.items():
        jwk = json.loads(algorithm.to_jwk(private.public_key()))  # type: ignore[attr-defined]
        jwk.update(kid=alg, alg=alg, use="sig")
        keys.append(jwk)
    return {"keys": keys}


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    body = json.dumps(_jwks()).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    server.shutdown()
    server.server_close()


@pytest.fixture
async def live_jwks(tmp_path: Path, sqlite_url: str, jwks_url: str) -> AsyncIterator[Live]:
    settings = make_settings(tmp_path, sqlite_url, jwt_secret=None, jwks_url=jwks_url)
    async for item in serve(settings, ScriptedProvider([]), ToolRegistry()):
        yield item


def _claims(sub: str = "carol", **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": sub, "iat": now, "exp": now + 600, **extra}


@pytest.mark.parametrize("alg", list(KEYS))
async def test_tokens_signed_by_a_key_in_the_jwks_are_accepted(live_jwks: Live, alg: str) -> None:
    private = KEYS[alg][0]
    signed = jwt.encode(_claims(), private, algorithm=alg, headers={"kid": alg})  # type: ignore[arg-type]
    async with live_jwks.client(None) as http:
        response = await http.get(
            "/api/conversations", headers={"Authorization": f"Bearer {signed}"}
        )
    assert response.status_code == 200, response.text


async def test_a_jwks_server_does_not_accept_hs256_even_with_a_guessable_secret(
    live_jwks: Live,
) -> None:
    forged = jwt.encode(_claims(), SECRET, algorithm="HS256")
    async with live_jwks.client(None) as http:
        response = await http.get(
            "/api/conversations", headers={"Authorization": f"Bearer {forged}"}
        )
    assert response.status_code == 401


def _unsigned() -> str:
    header = jwt.utils.base64url_encode(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = jwt.utils.base64url_encode(json.dumps(_claims("alice")).encode())
    return f"{header.decode()}.{body.decode()}."


def _hs_confusion() -> str:
    """HS256 signed with the RSA public key as the secret: the classic algorithm confusion."""
    from cryptography.hazmat.primitives import serialization

    public = (
        KEYS["RS256"][0]
        .public_key()
        .public_bytes(  # type: ignore[union-attr]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    import hashlib
    import hmac

    header = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = jwt.utils.base64url_encode(json.dumps(_claims("alice")).encode())
    signing_input = header + b"." + body
    signature = hmac.new(public, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + jwt.utils.base64url_encode(signature)).decode()


BAD_TOKENS = {
    "missing": None,
    "not a jwt": "Bearer not-a-jwt",
    "wrong scheme": f"Basic {token('alice')}",
    "expired": f"Bearer {jwt.encode({'sub': 'alice', 'exp': int(time.time()) - 3600}, SECRET, algorithm='HS256')}",
    "forged": f"Bearer {jwt.encode(_claims('alice'), 'another-secret-entirely-xxxxxxxxxxxx', algorithm='HS256')}",
    "alg none": f"Bearer {_unsigned()}",
    "no sub": f"Bearer {jwt.encode({'exp': int(time.time()) + 600}, SECRET, algorithm='HS256')}",
    "no exp": f"Bearer {jwt.encode({'sub': 'alice'}, SECRET, algorithm='HS256')}",
    "rs256 unknown to this server": f"Bearer {jwt.encode(_claims(), KEYS['RS256'][0], algorithm='RS256')}",  # type: ignore[arg-type]
    "hs/rs confusion": f"Bearer {_hs_confusion()}",
}


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
async def test_every_kind_of_bad_token_is_a_401_in_the_contract_shape(
    live: Live, kind: str
) -> None:
    header = BAD_TOKENS[kind]
    headers = {"Authorization": header} if header else {}
    async with live.client(None) as http:
        response = await http.post("/api/conversations", json={}, headers=headers)
    assert response.status_code == 401
    assert response.headers["x-error-code"] == "ERR_UNAUTHENTICATED"
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == "ERR_UNAUTHENTICATED"
    conversations, _ = await live.services.store.list_conversations("alice", limit=5)
    assert list(conversations) == []


async def test_a_new_sub_gets_a_user_row_on_its_first_valid_token(live: Live) -> None:
    from sqlalchemy import select

    from parley.store.tables import User

    async with live.client("dave") as http:
        assert (await http.get("/api/conversations")).status_code == 200
        assert (await http.get("/api/conversations")).status_code == 200
    async with live.services.store.sessions() as session:
        rows = (await session.execute(select(User.id).where(User.id == "dave"))).scalars().all()
    assert rows == ["dave"]


async def test_concurrent_first_requests_of_a_new_user_do_not_collide(live: Live) -> None:
    async with live.client("erin") as http:
        responses = await asyncio.gather(*(http.get("/api/conversations") for _ in range(10)))
    assert {r.status_code for r in responses} == {200}


async def test_a_verified_token_is_remembered_until_it_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same token again is not decoded again, but only until its ``exp``: past it, the
    token is checked afresh (and refused by PyJWT). A token differing only in its signature is
    never taken for the remembered one."""
    secret = "remember-" + "s" * 40
    verifier = TokenVerifier(secret=secret)
    token = issue_token(secret, "alice", ttl_seconds=100)
    decoded: list[str] = []
    real_decode = jwt.decode
    monkeypatch.setattr(
        jwt, "decode", lambda t, *a, **k: decoded.append(t) or real_decode(t, *a, **k)
    )

    assert (await verifier.verify(token)).user_id == "alice"
    assert (await verifier.verify(token)).user_id == "alice"
    assert len(decoded) == 1

    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(Unauthenticated):
        await verifier.verify(forged)

    later = time.time() + 101  # past exp, as parley's clock sees it
    monkeypatch.setattr("parley.auth.time.time", lambda: later)
    await verifier.verify(token)  # PyJWT's own clock says not yet expired
    assert len(decoded) == 3  # the valid token twice, the forged one once
