"""The one place errors become HTTP responses: ``{"success": false, "error": {code, message}}``.

Under ``/v1/`` (the OpenAI door) routing and body-parsing errors use OpenAI's error shape; a door
whose clients read another shape renders its routes' errors through a :class:`DoorRoute`.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from parley.errors import ParleyError, RateLimited, ValidationFailed, code_of
from parley.protocols.openai_chat import error_body as openai_error_body

log = structlog.get_logger("parley.api")

OPENAI_PREFIX = "/v1/"
TODO_APP = re.compile(r"/api/[^/]+/(chat|tasks(/[^/]+)?)")  # the todo app's routes


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"success": False, "error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers={"X-Error-Code": code, **(headers or {})})


def parley_error_response(exc: ParleyError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
    return error_response(exc.status, exc.code, exc.message, headers)


def validation_message(exc: RequestValidationError) -> str:
    """Where and what, for the first few problems of a body that does not fit its schema."""
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        problems.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(problems) or "the request is not valid"


def todo_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The todo app's error shape: ``{"error": "<message>"}``, the code in ``X-Error-Code``."""
    headers = {"X-Error-Code": code, **(headers or {})}
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def http_error(
    path: str, status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error no route chose the shape of (routing, parsing, the edge's checks): the
    contract's shape, OpenAI's under ``/v1/`` (the OpenAI door), the todo app's on its routes."""
    if path.startswith(OPENAI_PREFIX):
        body = openai_error_body(status, message)
        return JSONResponse(body, status_code=status, headers=headers)
    code = code_of(status)
    if TODO_APP.fullmatch(path):
        return todo_error(status, code, message, headers)
    return error_response(status, code, message, headers)


def unexpected_error_response(request_id: str | None) -> JSONResponse:
    """A 500 that names the request id for the logs and says nothing else."""
    message = f"internal error (request id {request_id})" if request_id else "internal error"
    return error_response(500, "ERR_INTERNAL", message)


def _logged(exc: ParleyError) -> ParleyError:
    if exc.status >= 500:
        log.warning("request_failed", code=exc.code, error=exc.message)
    return exc


class DoorRoute(APIRoute):
    """A route of a door whose clients read errors in a shape of their own: every error of its
    requests (the token check and the body's validation included) goes through :meth:`render`;
    a body that does not validate is a :class:`ValidationFailed` with ``validation_status``."""

    validation_status = 422

    @staticmethod
    @abstractmethod
    def render(exc: ParleyError) -> Response:
        """The door's error response for ``exc``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except ParleyError as exc:
                return self.render(_logged(exc))
            except RequestValidationError as exc:
                failed = ValidationFailed(validation_message(exc), status=self.validation_status)
                return self.render(failed)

        return route


def install(app: FastAPI) -> None:
    @app.exception_handler(ParleyError)
    async def _parley(request: Request, exc: ParleyError) -> JSONResponse:
        return parley_error_response(_logged(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "ERR_VALIDATION", validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = "no such route"
        return http_error(request.url.path, exc.status_code, message, dict(exc.headers or {}))
