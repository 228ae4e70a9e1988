"""What every HTTP provider shares: retries with backoff until the first event, and the mapping
from a model API's HTTP answers to parley's errors.

A request is retried on 429, 5xx and lost connections, but only until the first event has been
yielded; after that a failure ends the stream at once.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import random
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from parley import errors
from parley.providers.base import ProviderEvent

log = structlog.get_logger("parley.providers")

LOST_MID_STREAM = "connection to the model was lost mid-stream"
RETRYABLE = (errors.ProviderUnavailable, errors.ProviderDisconnected)  # before the first event


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry before the first event: backoff with jitter."""

    max_retries: int = 2
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based); Retry-After wins, capped."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        backoff = min(self.max_delay, self.base_delay * 2.0**retry)
        return backoff * random.uniform(0.5, 1.0)


async def stream_with_retries(
    attempt: Callable[[], AsyncGenerator[ProviderEvent, None]],
    policy: RetryPolicy,
    *,
    provider: str,
) -> AsyncGenerator[ProviderEvent, None]:
    """Run ``attempt()`` again after a failure that may pass (the API unreachable or overloaded,
    or the connection lost) as long as no event has reached the caller."""
    for retry in itertools.count():
        events = attempt()
        started = False
        try:
            async for event in events:
                started = True
                yield event
            return
        except RETRYABLE as exc:
            if started or retry >= policy.max_retries:
                raise
            delay = policy.delay(retry, _seconds(exc.extra.get("retry_after")))
            log.warning(
                "provider_retry", provider=provider, retry=retry + 1, delay=delay, error=str(exc)
            )
        finally:
            await events.aclose()
        await asyncio.sleep(delay)


def not_the_api(
    provider: str, api: str, status: int, headers: Mapping[str, str]
) -> errors.ProviderError | None:
    """The error for an answer that is not JSON (a web page at a wrong base URL, say), in one
    line instead of the SDK's own; None for a JSON answer."""
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return None
    kind = "HTML" if "html" in media else (media or "a body with no content type")
    message = f"{provider} answered {kind}, not {api} (status {status}) — check the base URL"
    return errors.ProviderError(message)


def no_model_list(provider: str, status: int) -> errors.ProviderError:
    message = f"{provider} answered with no list of models (status {status})"
    return errors.ProviderError(f"{message} — check the base URL")


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date), if given."""
    millis = _number(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _seconds(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def error_detail(body: object, fallback: str) -> str:
    """The ``error.message`` of an API error body, or ``fallback``."""
    inner = body.get("error", body) if isinstance(body, dict) else None
    message = inner.get("message") if isinstance(inner, dict) else None
    return message if isinstance(message, str) and message else fallback


def status_error(
    status: int, detail: str, headers: Mapping[str, str], *, provider: str, model: str | None
) -> errors.ParleyError:
    """The parley error for an HTTP error status from a model API."""
    if status in (401, 403):
        return errors.ProviderError("provider rejected the API key", provider=provider)
    if status == 404 and model is not None:
        return errors.InvalidModel(f"{provider} has no model {model!r}: {detail}")
    if status == 429 or status >= 500:
        message = f"{provider} answered HTTP {status}: {detail}"
        return errors.ProviderUnavailable(message, retry_after=retry_after(headers))
    return errors.ProviderError(f"{provider} refused the request (HTTP {status}): {detail}")
