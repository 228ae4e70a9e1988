"""The message route without FastAPI's per-request machinery: what the first token waits for.

FastAPI serves a route through layers that are each cheap and together are not: two exit
stacks, telemetry hooks, the body read and parsed, the dependency graph solved (each node about
30 µs warm), the body validated through its field, the endpoint called through a wrapper. On the
request that starts a reply, after the idleness between a person's messages (caches cold), that
was 0.55 ms between the edge and the endpoint (bench/RESULTS.md, seventh session), a third of
what parley added to the first token before the model was asked.

:func:`lean_route` serves an endpoint that FastAPI also declares (which keeps the OpenAPI
document) with its dependencies called directly, in the order and with the errors FastAPI
gives: a body that is not JSON is refused first, then the credentials, then the body's fields
(each error's ``loc`` starts with ``"body"``). It takes only what the chat routes use: path
parameters, one JSON body model, the ``Request``, the user and the services.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.exceptions import HTTPException, RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from parley.api.deps import Services, current_user, get_services

Endpoint = Callable[..., Awaitable[Response]]


Handler = Callable[[Request], Awaitable[Response]]


def lean_route(
    path: str,
    endpoint: Endpoint,
    body: type[BaseModel],
    *,
    method: str,
    wrap: Callable[[Handler], Handler] | None = None,
) -> Route:
    """A Starlette route for ``path`` calling ``endpoint(**path_params, body=..., request=...,
    user=..., s=...)``; put it before FastAPI's route of the same path. ``wrap`` is what the
    FastAPI route's class wraps its handler in (the OpenAI door's error shape)."""

    async def handle(request: Request) -> Response:
        raw = await request.body()
        document = _document(raw, request.headers.get("content-type"))
        services: Services = await get_services(request)
        user = await current_user(request)
        if not raw:
            missing = {"type": "missing", "loc": ("body",), "msg": "Field required"}
            raise RequestValidationError([{**missing, "input": None}])
        try:
            parsed = body.model_validate(document, from_attributes=True)  # as FastAPI does
        except ValidationError as exc:
            errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
            raise RequestValidationError(errors, body=document) from None
        return await endpoint(
            **request.path_params, body=parsed, request=request, user=user, s=services
        )

    return Route(path, wrap(handle) if wrap else handle, methods=[method], include_in_schema=False)


def _document(raw: bytes, content_type: str | None) -> Any:
    """The body as FastAPI takes it: parsed when it says it is JSON (refused at once when it
    is not), the bytes otherwise (which the model then refuses)."""
    if not raw or not _is_json(content_type):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        error = {"type": "json_invalid", "loc": ("body", exc.pos), "input": {}}
        raise RequestValidationError([{**error, "msg": "JSON decode error"}]) from None
    except (UnicodeDecodeError, RecursionError):  # not UTF-8; nested deeper than parsed
        raise HTTPException(400, "There was an error parsing the body") from None


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))
