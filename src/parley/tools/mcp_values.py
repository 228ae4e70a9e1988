"""MCP's values as parley takes them (tool names, annotations, results, errors), and the HTTP
client the SDK's streamable HTTP transport is given."""

from __future__ import annotations

import re
from typing import NamedTuple

import httpx2
import mcp_types as types

from parley.tools.base import ToolOutput

_NAME = re.compile(r"[^A-Za-z0-9_-]")


def tool_name(name: str) -> str:
    """A name every provider accepts: letters, digits, ``_`` and ``-``, at most 64."""
    return _NAME.sub("_", name)[:64]


class Hints(NamedTuple):
    read_only: bool
    destructive: bool


def tool_hints(annotations: types.ToolAnnotations | None) -> Hints:
    """What parley takes from a tool's MCP annotations. Only an explicit ``destructiveHint:
    true`` makes a tool destructive (the spec's default would make every unannotated tool
    ask), and a read-only tool never is."""
    read_only = bool(annotations and annotations.read_only_hint)
    destructive = bool(annotations and annotations.destructive_hint) and not read_only
    return Hints(read_only=read_only, destructive=destructive)


def to_output(result: types.CallToolResult) -> ToolOutput:
    """Structured content when there is some, else the text; ``isError`` stays an error."""
    text = "\n".join(b.text for b in result.content if isinstance(b, types.TextContent))
    if result.is_error:
        return ToolOutput(text or "the tool failed", is_error=True)
    if result.structured_content is not None:
        return ToolOutput(result.structured_content)
    if all(isinstance(b, types.TextContent) for b in result.content):
        return ToolOutput(text)
    return ToolOutput(
        [b.model_dump(mode="json", by_alias=True, exclude_none=True) for b in result.content]
    )


def describe(exc: BaseException) -> str:
    """The innermost message of an exception group (anyio wraps transport failures)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def http_client(headers: dict[str, str], auth: httpx2.Auth | None = None) -> httpx2.AsyncClient:
    """The client the MCP SDK's streamable HTTP transport takes (httpx2), with its timeouts:
    30 s to connect, write or wait for the pool, 300 s to read (a server may hold a stream)."""
    timeout = httpx2.Timeout(30.0, read=300.0)
    return httpx2.AsyncClient(headers=headers, auth=auth, timeout=timeout)
