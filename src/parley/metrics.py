"""Prometheus metrics: one registry per app, fed by the run events and the edge middleware.

:class:`Metrics` is a ``RunManager`` listener (``metrics(turn, event)``) for runs, tokens, tools and
approvals; :class:`RequestMeter` counts requests by route template, times them, tracks open
streams and writes one access log line each (at DEBUG for the web page's assets, at INFO for the
rest). ``GET /metrics`` renders the registry; it is open unless ``PARLEY_METRICS_TOKEN`` is set,
then it needs that bearer token.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

import structlog
from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.routing import Match
from starlette.types import Message, Scope

from parley.chat import events as ev
from parley.engine.requests import PreparedTurn
from parley.errors import Unauthenticated

log = structlog.get_logger("parley.access")

FIRST_OUTPUT = (ev.TextDelta, ev.ReasoningDelta, ev.ToolCallStarted, ev.ToolCallReady)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0)


class Metrics:
    """parley's metrics, in a registry of its own so that several apps never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._define_http()
        self._define_runs()
        self._run_started: dict[str, float] = {}

    def _define_http(self) -> None:
        r = self.registry
        self.requests = Counter(
            "parley_http_requests",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "parley_http_request_duration_seconds",
            "Time to answer a request (for streams: until the stream closed).",
            ["method", "route"],
            registry=r,
        )
        self.open_streams = Gauge(
            "parley_open_streams", "Event streams (SSE) open right now.", registry=r
        )

    def _define_runs(self) -> None:
        r = self.registry
        self.runs_started = Counter("parley_runs_started", "Runs started.", registry=r)
        self.runs_finished = Counter(
            "parley_runs_finished", "Runs finished, by finish reason.", ["reason"], registry=r
        )
        self.runs_failed = Counter(
            "parley_runs_failed", "Runs failed, by error code.", ["code"], registry=r
        )
        self.runs_cancelled = Counter("parley_runs_cancelled", "Runs cancelled.", registry=r)
        self.runs_suspended = Counter(
            "parley_runs_suspended", "Runs suspended to wait for an approval.", registry=r
        )
        self.ttft = Histogram(
            "parley_time_to_first_token_seconds",
            "From the start of a run to its first text, reasoning or tool call.",
            ["provider", "model"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "parley_tokens",
            "Tokens by provider, model and direction (input: prompt, output: completion).",
            ["provider", "model", "direction"],
            registry=r,
        )
        self.tool_calls = Counter(
            "parley_tool_calls",
            "Tool calls by tool and status (executed, failed, approved, denied).",
            ["tool", "status"],
            registry=r,
        )
        self.approvals_waiting = Gauge(
            "parley_approvals_waiting", "Tool calls waiting for a person's approval.", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # the RunManager listener ----------------------------------------------------------------

    def __call__(self, turn: PreparedTurn, event: ev.EngineEvent) -> None:
        if isinstance(event, FIRST_OUTPUT):
            self._first_output(turn)
        elif isinstance(event, ev.RunStarted):
            self.runs_started.inc()
            self._run_started[turn.run_id] = time.perf_counter()
        elif isinstance(event, ev.Usage):
            self._usage(turn, event)
        elif isinstance(event, ev.ToolResult | ev.ToolFailed | ev.ApprovalResolved):
            self._tool(turn, event)
        elif isinstance(event, ev.ApprovalRequested):
            self.approvals_waiting.inc()
        elif isinstance(event, ev.RunFinished | ev.RunFailed | ev.RunSuspended):
            self._ended(turn, event)

    def _first_output(self, turn: PreparedTurn) -> None:
        started = self._run_started.pop(turn.run_id, None)
        if started is not None:
            labels = self.ttft.labels(turn.model.provider_name, turn.model.model)
            labels.observe(time.perf_counter() - started)

    def _usage(self, turn: PreparedTurn, event: ev.Usage) -> None:
        provider, model = turn.model.provider_name, turn.model.model
        self.tokens.labels(provider, model, "input").inc(event.prompt_tokens)
        self.tokens.labels(provider, model, "output").inc(event.completion_tokens)

    def _tool(
        self, turn: PreparedTurn, event: ev.ToolResult | ev.ToolFailed | ev.ApprovalResolved
    ) -> None:
        tool = event.tool_name if event.tool_name in turn.tools.tools else "unknown"
        if isinstance(event, ev.ApprovalResolved):
            self.approvals_waiting.dec()
            status = "approved" if event.approved else "denied"
        elif isinstance(event, ev.ToolFailed):
            if event.denied:
                return  # already counted as denied by its ApprovalResolved
            status = "failed"
        else:
            status = "executed"
        self.tool_calls.labels(tool, status).inc()

    def _ended(
        self, turn: PreparedTurn, event: ev.RunFinished | ev.RunFailed | ev.RunSuspended
    ) -> None:
        self._run_started.pop(turn.run_id, None)
        if isinstance(event, ev.RunFailed):
            self.runs_failed.labels(event.code).inc()
        elif isinstance(event, ev.RunSuspended):
            self.runs_suspended.inc()
        elif event.finish_reason == "cancelled":
            self.runs_cancelled.inc()
        else:
            self.runs_finished.labels(event.finish_reason).inc()


# requests ------------------------------------------------------------------------------------


# what a route's ``matches`` reads of the scope, kept as the request came in
_MATCHED_ON = ("type", "path", "root_path", "method", "app_root_path")
# the web page's assets (app.py mounts them at /static): their access lines are DEBUG, not INFO
QUIET_TEMPLATES = frozenset({"/static/{path}"})


def route_template(scope: Scope, original: Scope) -> str:
    """The matched route's path template (``/api/conversations/{conversation_id}``), never ids."""
    route = scope.get("route")
    template = getattr(route, "path_format", None)
    if isinstance(template, str):
        return template
    router = getattr(scope.get("app"), "router", None)
    for candidate in getattr(router, "routes", []):
        match, _ = candidate.matches(original)
        if match is not Match.NONE:
            return str(getattr(candidate, "path_format", "unmatched"))
    return "unmatched"


class RequestMeter:
    """One HTTP request's metrics (kept by the edge middleware): counted and timed by route
    template when it ends, an open stream while its response is an event stream, one access log
    line."""

    __slots__ = ("metrics", "original", "response", "started")

    def __init__(self, metrics: Metrics, scope: Scope) -> None:
        self.metrics = metrics
        self.original = {k: scope[k] for k in _MATCHED_ON if k in scope}  # held for the stream
        self.started = time.perf_counter()
        self.response: dict[str, Any] = {"status": 500, "stream": False, "run_id": None}

    @classmethod
    def of(cls, scope: Scope) -> RequestMeter | None:
        """A meter for the request, once the app has its services (not before its lifespan)."""
        services = getattr(getattr(scope.get("app"), "state", None), "services", None)
        metrics: Metrics | None = getattr(services, "metrics", None)
        return None if metrics is None else cls(metrics, scope)

    def response_started(self, message: Message) -> None:
        _seen_start(message, self.response, self.metrics)

    def finish(self, scope: Scope) -> None:
        elapsed = time.perf_counter() - self.started
        template = route_template(scope, self.original)
        _record(self.metrics, scope, template, self.response, elapsed)
        if self.response["stream"]:
            self.metrics.open_streams.dec()


def _seen_start(message: Message, response: dict[str, Any], metrics: Metrics) -> None:
    headers = dict(message.get("headers") or [])
    response["status"] = message["status"]
    response["run_id"] = headers.get(b"x-run-id", b"").decode("latin-1") or None
    if headers.get(b"content-type", b"").startswith(b"text/event-stream"):
        response["stream"] = True
        metrics.open_streams.inc()


def _record(
    metrics: Metrics, scope: Scope, template: str, response: dict[str, Any], elapsed: float
) -> None:
    method, status = scope["method"], response["status"]
    metrics.requests.labels(method, template, str(status)).inc()
    metrics.request_seconds.labels(method, template).observe(elapsed)
    extra: dict[str, Any] = {}
    if response["run_id"]:
        extra["run_id"] = response["run_id"]
    user_id = (scope.get("state") or {}).get("user_id")
    if user_id:
        extra["user_id"] = user_id
    write = log.debug if template in QUIET_TEMPLATES else log.info
    write(
        "request",
        method=method,
        route_template=template,
        status=status,
        duration_ms=round(elapsed * 1000, 1),
        **extra,
    )


# GET /metrics --------------------------------------------------------------------------------

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False, response_model=None)
async def metrics_endpoint(request: Request) -> Response:
    services = request.app.state.services
    expected = services.settings.metrics_token
    if expected is not None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        secret = expected.get_secret_value().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), secret):
            raise Unauthenticated("the metrics need the bearer token PARLEY_METRICS_TOKEN")
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)
