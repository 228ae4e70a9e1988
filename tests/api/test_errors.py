"""Bad input gets a clear 4xx in the contract's shape, nothing is written, no trace leaks."""

from __future__ import annotations

import pytest
from fastapi import APIRouter
from tests.conftest import Live


async def _count(live: Live) -> int:
    items, _ = await live.services.store.list_conversations("alice", limit=100)
    return len(items)


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b"{not json", 422),
        (b'{"title": 5}', 422),
        (b'{"temperature": "hot"}', 422),
        (b'{"temperature": 9}', 422),
        (b"[]", 422),
        (b'{"title": "' + b"x" * 600 + b'"}', 422),
        (b'{"title": "\xff\xfe"}', 400),
    ],
)
async def test_malformed_bodies_are_a_validation_error_and_nothing_is_written(
    live: Live, content: bytes, status: int
) -> None:
    async with live.client() as http:
        response = await http.post(
            "/api/conversations", content=content, headers={"content-type": "application/json"}
        )
    assert response.status_code == status
    assert response.headers["x-error-code"] == "ERR_VALIDATION"
    assert response.json()["error"]["code"] == "ERR_VALIDATION"
    assert await _count(live) == 0


async def test_an_oversize_body_is_a_413_before_the_route_reads_it(live: Live) -> None:
    big = b'{"title": "' + b"x" * 2_100_000 + b'"}'
    async with live.client() as http:
        response = await http.post(
            "/api/conversations", content=big, headers={"content-type": "application/json"}
        )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "ERR_VALIDATION"
    assert await _count(live) == 0


async def test_an_oversize_chunked_body_is_refused_too(live: Live) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"title": "'
        for _ in range(30):
            yield b"x" * 100_000
        yield b'"}'

    async with live.client() as http:
        response = await http.post(
            "/api/conversations", content=chunks(), headers={"content-type": "application/json"}
        )
    assert response.status_code == 413
    assert await _count(live) == 0


async def test_an_unknown_route_is_a_404_in_the_contract_shape(live: Live) -> None:
    async with live.client() as http:
        response = await http.get("/api/nowhere")
    assert response.status_code == 404
    assert response.json() == {
        "success": False,
        "error": {"code": "ERR_NOT_FOUND", "message": "no such route"},
    }


async def test_an_unexpected_exception_is_a_500_with_a_request_id_and_no_trace(live: Live) -> None:
    router = APIRouter()

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    live.app.include_router(router)
    async with live.client() as http:
        response = await http.get("/boom", headers={"X-Request-Id": "req-123"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "req-123"
    body = response.json()
    assert body["error"] == {
        "code": "ERR_INTERNAL",
        "message": "internal error (request id req-123)",
    }
    assert "secret" not in response.text and "Traceback" not in response.text


async def test_every_response_echoes_a_request_id(live: Live) -> None:
    async with live.client() as http:
        response = await http.get("/healthz")
    assert len(response.headers["x-request-id"]) >= 16


async def test_a_bad_cursor_is_a_validation_error(live: Live) -> None:
    async with live.client() as http:
        response = await http.get("/api/conversations", params={"cursor": "!!!"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "ERR_VALIDATION"


async def test_health_ready_and_openapi(live: Live) -> None:
    async with live.client(None) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["database"] == "ok"
        spec = (await http.get("/openapi.json")).json()
        assert "/api/conversations" in spec["paths"]
        assert (await http.get("/docs")).status_code == 200
