"""Local accounts and the page's cookie session: ``parley user add|list|remove|passwd``, the
password sign-in, its rate limit, the cookie's flags, cross-site refusals, sign-out."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from tests.conftest import SECRET, Live, auth
from tests.support.sse import collect, kinds, text
from typer.testing import CliRunner
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from parley.accounts import COOKIE, CSRF_HEADER, Throttle, hash_password
from parley.cli import app
from parley.store.accounts import Accounts
from parley.store.tables import Account, WebSession

PASSWORD = "correct horse battery"
PAGE = {CSRF_HEADER: "parley"}


def _cli(live: Live, tmp_path: Path, *args: str, stdin: str | None = None) -> Any:
    env = {
        "PARLEY_DATABASE_URL": live.services.settings.effective_database_url,
        "PARLEY_DATA_DIR": str(tmp_path / "data"),
        "PARLEY_JWT_SECRET": SECRET,
        "PARLEY_AUTO_MIGRATE": "false",
    }
    return CliRunner().invoke(app, list(args), env=env, input=stdin)


async def _add(live: Live, name: str = "alice", password: str = PASSWORD) -> None:
    assert await Accounts(live.services.store).add(name, hash_password(password))


def _page(live: Live, **kwargs: Any) -> httpx.AsyncClient:
    """A client as the page is: no token, the CSRF header on every request."""
    return httpx.AsyncClient(base_url=live.url, headers=PAGE, timeout=10, **kwargs)


async def _sign_in(
    http: httpx.AsyncClient, user: str = "alice", password: str = PASSWORD
) -> httpx.Response:
    return await http.post("/api/auth/signin", json={"user": user, "password": password})


async def _cookie(live: Live, user: str = "alice") -> str:
    async with _page(live) as http:
        response = await _sign_in(http, user)
    assert response.status_code == 200, response.text
    return response.cookies[COOKIE]


def _signed_in(live: Live, cookie: str) -> httpx.AsyncClient:
    return _page(live, cookies={COOKIE: cookie})


async def test_the_command_line_adds_lists_changes_and_removes_accounts(
    live: Live, tmp_path: Path
) -> None:
    added = await asyncio.to_thread(
        _cli, live, tmp_path, "user", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert added.exit_code == 0, added.output
    again = await asyncio.to_thread(
        _cli, live, tmp_path, "user", "add", "alice", "--password-stdin", stdin="other-password\n"
    )
    assert again.exit_code == 1 and "has an account already" in again.output
    short = await asyncio.to_thread(
        _cli, live, tmp_path, "user", "add", "bob", "--password-stdin", stdin="short\n"
    )
    assert short.exit_code == 1 and "at least 8 characters" in short.output
    listed = await asyncio.to_thread(_cli, live, tmp_path, "user", "list")
    assert [line.split("\t")[0] for line in listed.output.splitlines()] == ["alice"]
    async with live.services.store.sessions() as session:
        [row] = (await session.execute(select(Account))).scalars().all()
    assert row.password_hash.startswith("$argon2id$") and PASSWORD not in row.password_hash

    cookie = await _cookie(live)
    changed = await asyncio.to_thread(
        _cli, live, tmp_path, "user", "passwd", "alice", "--password-stdin", stdin="new password\n"
    )
    assert changed.exit_code == 0, changed.output
    async with _signed_in(live, cookie) as http:
        assert (await http.get("/api/conversations")).status_code == 401  # the session ended
        assert (await _sign_in(http)).status_code == 401
        assert (await _sign_in(http, password="new password")).status_code == 200

    removed = await asyncio.to_thread(_cli, live, tmp_path, "user", "remove", "alice")
    assert removed.exit_code == 0, removed.output
    gone = await asyncio.to_thread(_cli, live, tmp_path, "user", "remove", "alice")
    assert gone.exit_code == 1 and "no account 'alice'" in gone.output
    async with _page(live) as http:
        assert (await _sign_in(http, password="new password")).status_code == 401
    assert (await asyncio.to_thread(_cli, live, tmp_path, "user", "list")).output == ""


async def test_a_right_password_gets_a_strict_httponly_cookie_and_no_token(live: Live) -> None:
    await _add(live)
    async with _page(live) as http:
        response = await _sign_in(http)
    assert response.status_code == 200, response.text
    assert response.json() == {"user": "alice", "via": "session", "expires_in": 14 * 86_400}
    header = response.headers["set-cookie"].lower()
    assert header.startswith(f"{COOKIE}=")
    assert "httponly" in header and "samesite=strict" in header and "path=/" in header
    assert "secure" not in header  # served over http here
    assert "eyJ" not in response.text


async def test_over_https_the_cookie_is_secure(live: Live) -> None:
    await _add(live)
    transport = httpx.ASGITransport(app=live.app)
    async with httpx.AsyncClient(transport=transport, base_url="https://127.0.0.1") as http:
        response = await http.post(
            "/api/auth/signin", json={"user": "alice", "password": PASSWORD}, headers=PAGE
        )
    assert response.status_code == 200, response.text
    assert "; secure" in response.headers["set-cookie"].lower()


async def test_a_wrong_password_and_an_unknown_user_get_the_same_401_and_no_session(
    live: Live,
) -> None:
    await _add(live)
    async with _page(live) as http:
        wrong = await _sign_in(http, password="not the password")
        unknown = await _sign_in(http, user="mallory")
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert response.json()["error"] == {
            "code": "ERR_UNAUTHENTICATED",
            "message": "wrong user name or password",
        }
        assert "set-cookie" not in response.headers
    async with live.services.store.sessions() as session:
        assert (await session.execute(select(WebSession))).scalars().all() == []


async def test_sign_in_attempts_are_limited_per_account_and_per_address(live: Live) -> None:
    await _add(live)
    live.services.signins.throttle = Throttle(per_account=3, per_address=5, window=300)
    async with _page(live) as http:
        tries = [await _sign_in(http, password=f"wrong {n}") for n in range(3)]
        assert [r.status_code for r in tries] == [401] * 3
        limited = await _sign_in(http)  # the right password, but too many tries for alice
        assert limited.status_code == 429
        assert "too many sign-in attempts" in limited.json()["error"]["message"]
        assert int(limited.headers["retry-after"]) > 0
        assert "set-cookie" not in limited.headers
        # another account from the same address: two more, then the address is limited
        others = [(await _sign_in(http, user=f"u{n}")).status_code for n in range(3)]
    assert others == [401, 429, 429]


async def test_a_cross_site_sign_in_or_state_changing_request_is_refused(live: Live) -> None:
    await _add(live)
    async with httpx.AsyncClient(base_url=live.url) as http:
        no_header = await _sign_in(http)
    assert no_header.status_code == 403 and "set-cookie" not in no_header.headers
    cookie = await _cookie(live)
    plain = httpx.AsyncClient(base_url=live.url, cookies={COOKIE: cookie})
    async with plain, _signed_in(live, cookie) as page:
        # a form another site posts: the cookie, no custom header
        forged = await plain.post("/api/conversations", json={"title": "forged"})
        assert forged.status_code == 403
        assert forged.json()["error"]["code"] == "ERR_FORBIDDEN"
        # a script of another site's: its Origin is not parley's
        evil = {"Origin": "https://evil.example"}
        cross = await page.post("/api/conversations", json={"title": "cross"}, headers=evil)
        assert cross.status_code == 403
        assert (await page.get("/api/conversations", headers=evil)).status_code == 403
        # the page itself
        own = await page.post(
            "/api/conversations", json={"title": "mine"}, headers={"Origin": live.url}
        )
        assert own.status_code == 201, own.text
        assert (await plain.get("/api/conversations")).status_code == 200  # a read needs no header
    convos, _ = await live.services.store.list_conversations("alice", limit=10)
    assert [c.title for c in convos] == ["mine"]


async def test_the_cookie_authorises_api_calls_and_a_streamed_reply(live: Live) -> None:
    await _add(live)
    live.scripted.enqueue([{"text": "hello alice"}])
    async with _signed_in(live, await _cookie(live)) as http:
        session = await http.get("/api/auth/session")
        assert session.json() == {"user": "alice", "via": "session", "expires_in": None}
        convo = (await http.post("/api/conversations", json={})).json()
        url = f"/api/conversations/{convo['id']}/messages"
        response, events = await collect(http, "POST", url, json_body={"content": "hi"})
    assert response.status_code == 200
    assert kinds(events)[-1] == "[DONE]" and "done" in kinds(events)
    assert text(events) == "hello alice"


async def test_the_cookie_opens_the_progress_socket_of_its_user_from_parleys_page(
    live: Live,
) -> None:
    await _add(live)
    cookie = await _cookie(live)
    url = live.url.replace("http://", "ws://") + "/ws/alice/chat"
    headers = {"Cookie": f"{COOKIE}={cookie}"}
    async with connect(url, additional_headers=headers, origin=live.url) as socket:  # type: ignore[arg-type]
        first = await asyncio.wait_for(socket.recv(), 5)
    assert '"connection_established"' in str(first)
    for origin in ("https://evil.example", None):
        async with connect(url, additional_headers=headers, origin=origin) as socket:  # type: ignore[arg-type]
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(socket.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_sign_out_ends_the_session_for_every_copy_of_the_cookie(live: Live) -> None:
    await _add(live)
    cookie = await _cookie(live)
    async with _signed_in(live, cookie) as http, _signed_in(live, cookie) as copy:
        assert (await copy.get("/api/conversations")).status_code == 200
        out = await http.post("/api/auth/signout")
        assert out.status_code == 204
        assert (
            f'{COOKIE}=""' in out.headers["set-cookie"]
            and "max-age=0" in out.headers["set-cookie"].lower()
        )
        after = await copy.get("/api/conversations")
    assert after.status_code == 401
    assert after.json()["error"]["message"] == "your session has ended: sign in again"
    async with _page(live) as http:
        assert (await http.post("/api/auth/signout")).status_code == 401  # no session to end
    async with live.services.store.sessions() as session:
        assert (await session.execute(select(WebSession))).scalars().all() == []


async def test_bearer_tokens_work_as_before_and_win_over_a_cookie(live: Live) -> None:
    await _add(live)
    cookie = await _cookie(live)
    async with live.client("bob", cookies={COOKIE: cookie}) as http:
        session = await http.get("/api/auth/session")
        assert session.json()["user"] == "bob" and session.json()["via"] == "token"
        created = await http.post("/api/conversations", json={})  # no CSRF header: a token
        assert created.status_code == 201
    async with httpx.AsyncClient(base_url=live.url, headers=auth("carol")) as http:
        assert (await http.get("/api/conversations")).status_code == 200


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return getattr(request, "param", {})


@pytest.mark.parametrize("settings_overrides", [{"auth": "none"}], indirect=True)
async def test_single_user_mode_needs_no_sign_in_and_offers_none(live: Live) -> None:
    async with _page(live) as http:
        session = await http.get("/api/auth/session")
        assert session.json() == {"user": "local", "via": "none", "expires_in": None}
        refused = await _sign_in(http)
        assert refused.status_code == 404
    async with _signed_in(live, "left-over") as http:
        assert (await http.get("/api/conversations")).status_code == 200
