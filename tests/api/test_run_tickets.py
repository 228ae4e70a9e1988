"""Run tickets: ``POST /api/runs/{run_id}/ticket`` gives the run's owner a short-lived ticket
that opens ``GET /api/runs/{run_id}/events?ticket=`` (for a browser ``EventSource``, which cannot
send ``Authorization``), and nothing else: not another run, not another route, not as a bearer
token, not after it expires; and it never reaches a log line."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import httpx
import jwt
import pytest
from tests.conftest import SECRET, Live, token
from tests.support.sse import Event, collect, kinds, text

from parley.auth import TICKET_AUDIENCE, TICKET_TTL
from parley.logging import MASK, configure


async def _finished_run(http: httpx.AsyncClient, live: Live, reply: str) -> str:
    live.scripted.enqueue([{"text": reply}])
    cid = (await http.post("/api/conversations", json={})).json()["id"]
    response, events = await collect(
        http, "POST", f"/api/conversations/{cid}/messages", json_body={"content": "hi"}
    )
    assert kinds(events)[-1] == "[DONE]", kinds(events)
    run_id: str = response.headers["x-run-id"]
    await live.services.runs.wait(run_id)
    return run_id


async def _ticket(http: httpx.AsyncClient, run_id: str) -> str:
    response = await http.post(f"/api/runs/{run_id}/ticket")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"ticket", "expires_in"} and body["expires_in"] == TICKET_TTL
    ticket: str = body["ticket"]
    return ticket


async def _events(
    anonymous: httpx.AsyncClient, run_id: str, ticket: str, **headers: str
) -> tuple[httpx.Response, list[Event]]:
    return await collect(
        anonymous, "GET", f"/api/runs/{run_id}/events?ticket={ticket}", headers=headers
    )


def _assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "ERR_UNAUTHENTICATED"


async def test_the_owners_ticket_opens_the_runs_events_without_a_header(live: Live) -> None:
    async with live.client() as http, live.client(None) as anonymous:
        run_id = await _finished_run(http, live, "Hello by ticket.")
        ticket = await _ticket(http, run_id)
        _, with_bearer = await collect(http, "GET", f"/api/runs/{run_id}/events")
        response, events = await _events(anonymous, run_id, ticket)

    assert response.status_code == 200
    assert kinds(events) == ["start", "content", "done", "[DONE]"]
    assert text(events) == "Hello by ticket."
    assert events == with_bearer


async def test_a_ticket_resumes_after_last_event_id_without_repeating_an_event(
    live: Live,
) -> None:
    async with live.client() as http, live.client(None) as anonymous:
        run_id = await _finished_run(http, live, "resumed")
        ticket = await _ticket(http, run_id)
        _, everything = await _events(anonymous, run_id, ticket)
        first = everything[0]
        response, rest = await _events(anonymous, run_id, ticket, **{"Last-Event-ID": first.id})

    assert response.status_code == 200
    assert [first, *rest] == everything
    assert int(rest[0].id) > int(first.id)


async def test_a_ticket_for_another_users_run_or_an_unknown_one_is_a_404(live: Live) -> None:
    async with live.client() as alice, live.client("bob") as bob, live.client(None) as nobody:
        run_id = await _finished_run(alice, live, "mine")
        foreign = await bob.post(f"/api/runs/{run_id}/ticket")
        unknown = await alice.post("/api/runs/run_nope/ticket")
        anonymous = await nobody.post(f"/api/runs/{run_id}/ticket")

    for response in (foreign, unknown):
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "ERR_NOT_FOUND"
    _assert_401(anonymous)


async def test_an_expired_ticket_is_a_401(live: Live) -> None:
    tickets = live.services.tickets
    async with live.client() as http, live.client(None) as anonymous:
        run_id = await _finished_run(http, live, "soon gone")
        ticket = await _ticket(http, run_id)
        issued_at = time.time()
        tickets.clock = lambda: issued_at + TICKET_TTL - 2
        still, _ = await _events(anonymous, run_id, ticket)
        tickets.clock = lambda: issued_at + TICKET_TTL + 1
        expired, _ = await _events(anonymous, run_id, ticket)

    assert TICKET_TTL <= 120
    assert still.status_code == 200
    _assert_401(expired)
    assert "expired" in expired.json()["error"]["message"]


async def test_a_ticket_for_one_run_is_a_401_on_another_runs_events(live: Live) -> None:
    async with live.client() as http, live.client("bob") as bob, live.client(None) as anonymous:
        first = await _finished_run(http, live, "one")
        second = await _finished_run(http, live, "two")
        ticket = await _ticket(http, first)
        response, _ = await _events(anonymous, second, ticket)
        # the bearer token beside it does not rescue a ticket for the wrong run
        with_bearer, _ = await _events(http, second, ticket)
        bobs = await _ticket(bob, await _finished_run(bob, live, "bob's"))
        foreign, _ = await _events(anonymous, first, bobs)

    _assert_401(response)
    _assert_401(with_bearer)
    _assert_401(foreign)


async def test_a_ticket_opens_no_other_route(live: Live) -> None:
    async with live.client() as http, live.client(None) as anonymous:
        run_id = await _finished_run(http, live, "read only")
        ticket = await _ticket(http, run_id)
        cid = (await http.get(f"/api/runs/{run_id}")).json()["conversation_id"]
        query = {"ticket": ticket}
        refused = [
            await anonymous.get(f"/api/runs/{run_id}", params=query),
            await anonymous.post(f"/api/runs/{run_id}/cancel", params=query),
            await anonymous.post(f"/api/runs/{run_id}/ticket", params=query),
            await anonymous.get(f"/api/conversations/{cid}", params=query),
            await anonymous.get(f"/api/conversations/{cid}/messages", params=query),
            await anonymous.get("/api/conversations", params=query),
        ]

    for response in refused:
        _assert_401(response)


async def test_a_ticket_is_not_a_bearer_token(live: Live) -> None:
    async with live.client() as http, live.client(None) as anonymous:
        run_id = await _finished_run(http, live, "not a bearer")
        as_bearer = {"Authorization": f"Bearer {await _ticket(http, run_id)}"}
        events, _ = await collect(anonymous, "GET", f"/api/runs/{run_id}/events", headers=as_bearer)
        listing = await anonymous.get("/api/conversations", headers=as_bearer)
        openai = await anonymous.get("/v1/models", headers=as_bearer)

    _assert_401(events)
    _assert_401(listing)
    assert openai.status_code == 401


async def test_a_bearer_token_or_a_forged_ticket_is_not_a_ticket(live: Live) -> None:
    """Tickets are signed with a key derived from the secret: the same claims signed with the
    secret itself (what a leaked access token's key would make) are refused."""
    async with live.client() as http, live.client(None) as anonymous:
        run_id = await _finished_run(http, live, "forged")
        now = int(time.time())
        claims = {"sub": "alice", "run": run_id, "aud": TICKET_AUDIENCE, "exp": now + 60}
        forged = jwt.encode(claims, SECRET, algorithm="HS256")
        answers = [
            (await _events(anonymous, run_id, forged))[0],
            (await _events(anonymous, run_id, token("alice")))[0],
            (await _events(anonymous, run_id, "not-a-ticket"))[0],
        ]

    for response in answers:
        _assert_401(response)


@pytest.fixture
def _access_lines(live: Live) -> Iterator[None]:
    """uvicorn's access log on, once the server has set its level (``parley serve`` runs it at
    WARNING): each line has the URL with its query."""
    access = logging.getLogger("uvicorn.access")
    level = access.level
    access.setLevel(logging.INFO)
    yield
    access.setLevel(level)
    configure(json_logs=False)


@pytest.mark.parametrize("settings_overrides", [{"log_json": True, "log_level": "DEBUG"}])
@pytest.mark.usefixtures("_access_lines")
async def test_a_ticket_never_reaches_a_log_line(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    async with live.client() as http, live.client(None) as anonymous:
        run_id = await _finished_run(http, live, "quiet")
        ticket = await _ticket(http, run_id)
        capsys.readouterr()
        await _events(anonymous, run_id, ticket)
        await _events(anonymous, "run_other", ticket)
        await anonymous.get(f"/api/runs/{run_id}", params={"ticket": ticket})
        await http.get("/healthz")  # its access line comes after the others
    err = capsys.readouterr().err

    payload = ticket.split(".")[1]
    assert ticket not in err and payload not in err
    assert f"ticket={MASK}" in err  # the access lines were written, with the ticket masked
    assert err.count('"event": "request"') >= 3
