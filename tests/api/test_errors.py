"""Bad input gets a clear 4xx in the contract's shape, nothing is written, no trace leaks."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from fastapi import APIRouter
from tests.conftest import Live

import parley.api
from parley import errors
from parley.api.routes.sessions import SessionRoute
from parley.api.routes.todo_chat import TodoRoute
from parley.api.routes.vercel import PlaygroundRoute
from parley.errors import (
    ApiKeyMissing,
    ParleyError,
    PortInUse,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    status_of,
)
from parley.providers.scripted import ScriptedProvider


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


def _instance(cls: type[ParleyError]) -> ParleyError:
    if cls is PortInUse:
        return PortInUse("127.0.0.1", 8000)
    if cls is RateLimited:
        return RateLimited("slow down", retry_after=3)
    return cls(f"a {cls.__name__}")


def _classes(root: type[ParleyError] = ParleyError) -> list[type[ParleyError]]:
    return [root] + [c for sub in root.__subclasses__() for c in _classes(sub)]


EXPECTED_STATUS = {
    "ParleyError": 500,
    "ValidationFailed": 400,
    "Unauthenticated": 401,
    "Forbidden": 403,
    "NotFound": 404,
    "Conflict": 409,
    "RateLimited": 429,
    "InvalidModel": 400,
    "ProviderError": 502,
    "ProviderDisconnected": 502,
    "ProviderUnavailable": 503,
    "ProviderTimeout": 504,
    "McpAuthorizationFailed": 502,
    "RunTimeout": 504,
    "ConfigError": 500,
    "PortInUse": 500,
    "ApiKeyMissing": 503,
}


def test_the_tree_names_every_class_with_its_status() -> None:
    assert {c.__name__: c.status for c in _classes()} == EXPECTED_STATUS
    assert all(c.__name__ in (errors.__doc__ or "") for c in _classes())


@pytest.mark.parametrize("cls", _classes(), ids=lambda c: c.__name__)
async def test_each_error_answers_its_own_status_and_code_at_every_handler(
    live: Live, cls: type[ParleyError]
) -> None:
    router = APIRouter()

    @router.get("/raises")
    async def raises() -> None:
        raise _instance(cls)

    live.app.include_router(router)
    async with live.client() as http:
        response = await http.get("/raises")
    assert (response.status_code, response.headers["x-error-code"]) == (cls.status, cls.code)
    assert response.json()["error"]["code"] == cls.code
    assert TodoRoute.render(_instance(cls)).status_code == cls.status
    assert PlaygroundRoute.render(_instance(cls)).status_code == cls.status
    seed = 500 if cls is ApiKeyMissing else cls.status  # the session seed's documented JSON 500
    assert SessionRoute.render(_instance(cls)).status_code == seed


def test_an_upstream_that_answered_badly_is_told_from_one_that_is_not_there() -> None:
    assert (ProviderError("x").status, ProviderUnavailable("x").status) == (502, 503)
    assert ApiKeyMissing("no key").status == 503


@pytest.mark.parametrize("cls", _classes(), ids=lambda c: c.__name__)
def test_a_failed_runs_code_reads_as_its_most_general_class(cls: type[ParleyError]) -> None:
    first = next(c for c in _classes() if c.code == cls.code)
    assert status_of(cls.code) == first.status
    assert status_of("ERR_NO_SUCH_CODE") == 500


def _is_status_table(value: object, codes: set[str]) -> bool:
    """A dict between the tree's codes and HTTP statuses, either way round."""
    if not isinstance(value, dict):
        return False
    pairs = [
        (k, v) for k, v in value.items() if isinstance(k, str | int) and isinstance(v, str | int)
    ]
    return any(
        (k in codes and isinstance(v, int)) or (v in codes and isinstance(k, int)) for k, v in pairs
    )


def test_no_module_of_the_api_keeps_a_second_table_of_statuses() -> None:
    """Every status comes from the tree: no mapping between codes and statuses beside it."""
    codes = {c.code for c in _classes()}
    found = []
    for info in pkgutil.walk_packages(parley.api.__path__, "parley.api."):
        module = importlib.import_module(info.name)
        found += [f"{info.name}.{n}" for n, v in vars(module).items() if _is_status_table(v, codes)]
    assert found == []


@pytest.mark.parametrize(
    ("code", "status"),
    [("ERR_TIMEOUT", 504), ("ERR_PROVIDER_UNAVAILABLE", 502), ("ERR_PROVIDER_UNAVAILABLE", 503)],
    ids=["timeout", "provider-answered-an-error", "provider-unreachable"],
)
async def test_a_failed_run_answers_the_status_of_its_error_on_the_json_doors(
    live: Live, scripted: ScriptedProvider, code: str, status: int
) -> None:
    failure = {"error": {"code": code, "message": "upstream trouble", "status": status}}
    scripted.enqueue([failure], [failure])
    body = {"model": "scripted/x", "messages": [{"role": "user", "content": "hi"}]}
    async with live.client() as http:
        openai = await http.post("/v1/chat/completions", json=body)
        todo = await http.post("/api/alice/chat", json={"message": "hi"})
    assert (openai.status_code, todo.status_code) == (status, status)
    assert todo.headers["x-error-code"] == code
