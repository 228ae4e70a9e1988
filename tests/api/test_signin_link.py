"""Signing in with the one-time link the console prints: its code gives a token for the user it
was printed for, once; no route gives a token for a user name it is merely given."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from sqlalchemy import select
from tests.conftest import Live

from parley import signin
from parley.store.tables import SigninCode

# the dev mode `parley serve` starts in with no configuration: tokens signed with its own secret
DEV_MODE = {"jwt_secret": None}
JWT = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+")
REFUSED = "this sign-in link was used, has expired or is wrong"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return DEV_MODE


async def _redeem(http: httpx.AsyncClient, code: str) -> httpx.Response:
    return await http.post("/api/auth/signin-link", json={"code": code})


def _assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "ERR_UNAUTHENTICATED"
    assert response.json()["error"]["message"].startswith(REFUSED)
    assert not JWT.search(response.text)


async def test_a_link_signs_in_the_user_it_was_printed_for_once(live: Live) -> None:
    code = await signin.issue(live.services.store, "bob")
    async with live.client(None) as http:
        first = await _redeem(http, code)
        second = await _redeem(http, code)
        assert first.status_code == 200, first.text
        body = first.json()
        assert body["user"] == "bob" and body["expires_in"] == signin.SESSION_TTL
        mine = await http.get(
            "/api/conversations", headers={"Authorization": f"Bearer {body['token']}"}
        )
    assert mine.status_code == 200
    _assert_refused(second)


async def test_of_redemptions_at_the_same_moment_one_succeeds(live: Live) -> None:
    code = await signin.issue(live.services.store, "bob")
    async with live.client(None) as http:
        answers = await asyncio.gather(*(_redeem(http, code) for _ in range(8)))
    assert sorted(a.status_code for a in answers) == [200] + [401] * 7


async def test_an_expired_code_is_refused(live: Live) -> None:
    code = await signin.issue(live.services.store, "bob", ttl=-1)
    async with live.client(None) as http:
        _assert_refused(await _redeem(http, code))


async def test_a_wrong_code_is_refused_and_leaves_the_right_one_usable(live: Live) -> None:
    code = await signin.issue(live.services.store, "bob")
    async with live.client(None) as http:
        _assert_refused(await _redeem(http, code[:-1] + ("A" if code[-1] != "A" else "B")))
        _assert_refused(await _redeem(http, "x"))
        assert (await _redeem(http, code)).status_code == 200


async def test_only_the_codes_digest_is_stored_and_a_used_code_is_gone(live: Live) -> None:
    store = live.services.store
    code = await signin.issue(store, "bob")
    async with store.sessions() as session:
        rows = (await session.execute(select(SigninCode))).scalars().all()
    assert [(r.digest, r.user_id) for r in rows] == [(signin.digest(code), "bob")]
    assert code not in repr([vars(r) for r in rows])
    assert await signin.redeem(store, code) == "bob"
    async with store.sessions() as session:
        assert (await session.execute(select(SigninCode))).scalars().all() == []


async def test_the_dev_token_route_is_gone(live: Live) -> None:
    async with live.client(None) as http:
        for path in ("/api/dev/token", "/api/dev"):
            response = await http.get(path, params={"user": "alice"})
            assert response.status_code == 404, f"{path}: {response.text}"


USER_NAMES = {"user": "alice", "user_id": "alice", "username": "alice", "sub": "alice"}
USER_NAMES |= {"name": "alice", "email": "alice@example.com", "login": "alice", "as": "alice"}


def _routes(live: Live) -> list[tuple[str, str]]:
    """Every HTTP route of the app, in the schema or not, as (method, path with ``alice``)."""
    found = []
    for route in iter_route_contexts(live.app.routes):
        path, methods = route.path, route.methods or set()
        if path is None or path.startswith("/static"):
            continue
        for method in sorted(methods - {"HEAD", "OPTIONS"}):
            found.append((method, re.sub(r"\{[^}]+\}", "alice", path)))
    return found


async def test_no_route_gives_a_token_for_a_user_name_it_is_given(live: Live) -> None:
    """Every route, with a user name in every likely query and body field and in every path
    parameter, without a token and with bob's: no answer carries a JWT."""
    routes = _routes(live)
    assert ("POST", "/api/auth/signin-link") in routes and len(routes) > 30
    leaks: list[str] = []
    for user in (None, "bob"):
        async with live.client(user) as http:
            for method, path in routes:
                body = USER_NAMES if method not in ("GET", "DELETE") else None
                response = await http.request(method, path, params=USER_NAMES, json=body)
                if JWT.search(response.text) or JWT.search(str(response.headers)):
                    leaks.append(f"{method} {path}: {response.status_code} {response.text[:120]}")
    assert not leaks, "\n".join(leaks)
