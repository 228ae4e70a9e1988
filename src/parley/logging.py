"""Structured logs (structlog): JSON lines in production, readable lines on a terminal.

Every line carries the context bound with ``structlog.contextvars`` (``request_id`` and ``route``
from the request middleware, ``run_id`` inside a run). Secrets never reach a line: keys such as
``authorization``, ``token``, ``api_key``, ``password`` and ``secret`` are masked, and bearer
tokens, JWTs, API keys and credentials in a query string (``?token=``, ``?ticket=``: an access
line's URL) are masked inside any text. Message text (``content``, ``text``,
``args``, ``result``…) is dropped unless ``log_content`` (``PARLEY_LOG_CONTENT=true``) is on.
No line carries a raw control character: JSON escapes them, and so do readable lines.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

MASK = "********"
SECRET_KEYS = re.compile(
    r"^(authorization|proxy_authorization|cookie|set_cookie|password|passwd|secret|token|jwt"
    r"|bearer|api_?key|private_key)$"
    r"|(_token|_secret|_password|_api_?key|_private_key)$"
)
SECRET_TEXT = (
    (re.compile(r"(?i)(?<![\w-])(ticket|token|access_token)=[^&\s\"'#]+"), r"\1=" + MASK),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer " + MASK),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), MASK),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), MASK),
)
CONTENT_KEYS = frozenset(
    {
        "content",
        "text",
        "message_text",
        "messages",
        "prompt",
        "delta",
        "reasoning",
        "parts",
        "args",
        "arguments",
        "result",
        "body",
        "system_prompt",
    }
)
# C0 and C1 controls, line and paragraph separators, bidi overrides, lone surrogates.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_lock = threading.Lock()


class Redactor:
    """A processor that masks secrets always and drops message text unless ``log_content``."""

    def __init__(self, *, log_content: bool) -> None:
        self.log_content = log_content

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        return {k: self._value(k, v) for k, v in event_dict.items() if self._keep(k)}

    def _keep(self, key: object) -> bool:
        return self.log_content or _norm(key) not in CONTENT_KEYS

    def _value(self, key: object, value: Any, depth: int = 0) -> Any:
        if SECRET_KEYS.search(_norm(key)):
            return MASK if value is not None else None
        if isinstance(value, str):
            return scrub(value)
        if depth >= 4:
            return value
        if isinstance(value, dict):
            return {k: self._value(k, v, depth + 1) for k, v in value.items() if self._keep(k)}
        if isinstance(value, list | tuple):
            return [self._value("", v, depth + 1) for v in value]
        return value


def _norm(key: object) -> str:
    return str(key).lower().replace("-", "_")


def scrub(text: str) -> str:
    """Mask bearer tokens, JWTs and API keys inside free text."""
    for pattern, replacement in SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


class _StderrLogger:
    """Prints each line to the *current* ``sys.stderr`` (so redirects and test capture apply)."""

    def msg(self, message: str) -> None:
        with _lock:
            print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = error = err = critical = exception = fatal = msg


def _stderr_logger(*args: Any) -> _StderrLogger:
    return _StderrLogger()


class _StdlibHandler(logging.Handler):
    """Routes stdlib records (uvicorn, SQLAlchemy…) through the same JSON pipeline."""

    parley = True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        _StderrLogger().msg(line)


def configure(*, json_logs: bool, log_content: bool = False, level: str = "INFO") -> None:
    """Configure structlog (and, for JSON, the stdlib loggers) for the whole process."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if json_logs:
        shared.append(structlog.processors.format_exc_info)
    shared.append(Redactor(log_content=log_content))
    structlog.configure(
        processors=[*shared, *_renderers(json_logs)],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    _configure_stdlib(shared if json_logs else None)


def _renderers(json_logs: bool) -> list[Processor]:
    """JSON (which escapes control characters itself), or readable lines with them escaped."""
    if json_logs:
        return [structlog.processors.JSONRenderer()]
    console = structlog.dev.ConsoleRenderer(
        colors=sys.stderr.isatty(),
        exception_formatter=structlog.dev.plain_traceback,  # cheap: errors under load stay cheap
    )
    return [escape_controls, console]


def escape_controls(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """Control characters in text values written as escapes (``\\n``, ``\\x1b``, ``\\u202e``),
    so that no value a client sent can start a line of its own or restyle a terminal."""
    return {k: _escaped(v) if isinstance(v, str) else v for k, v in event_dict.items()}


def _escaped(text: str) -> str:
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)


def _configure_stdlib(shared: list[Processor] | None) -> None:
    """In JSON mode, stdlib lines (uvicorn's included) become JSON lines too."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "parley", False)]:
        root.removeHandler(handler)
    if shared is None:
        return
    handler = _StdlibHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root.addHandler(handler)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
