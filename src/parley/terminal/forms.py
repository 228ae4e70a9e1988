"""A tool's questions (an elicitation's flat JSON schema), asked field by field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.markup import escape

Ask = Callable[[str], str]


def fill_form(schema: dict[str, Any], ask: Ask) -> dict[str, Any]:
    """Ask for each field of a flat JSON schema in turn; returns the typed answers."""
    required = set(schema.get("required") or [])
    content: dict[str, Any] = {}
    for name, prop in (schema.get("properties") or {}).items():
        value = _ask_field(name, prop or {}, name in required, ask)
        if value is not None:
            content[name] = value
    return content


def _ask_field(name: str, prop: dict[str, Any], required: bool, ask: Ask) -> Any:
    label = prop.get("title") or name
    choices = prop.get("enum")
    hints = [f"one of {', '.join(map(str, choices))}"] if choices else []
    if prop.get("type") == "boolean":
        hints.append("y/n")
    if "default" in prop:
        hints.append(f"default {prop['default']}")
    hints.append("required" if required else "optional")
    while True:
        raw = ask(f"  {escape(label)} [dim]({escape('; '.join(hints))})[/dim]: ").strip()
        if not raw:
            if "default" in prop:
                return prop["default"]
            if not required:
                return None
            continue
        try:
            return _coerce(raw, prop)
        except ValueError:
            continue


def _coerce(raw: str, prop: dict[str, Any]) -> Any:
    kind = prop.get("type")
    if kind == "boolean":
        if raw.lower()[:1] not in ("y", "n", "t", "f"):
            raise ValueError(raw)
        return raw.lower()[:1] in ("y", "t")
    value: Any = int(raw) if kind == "integer" else float(raw) if kind == "number" else raw
    if prop.get("enum") and value not in prop["enum"]:
        raise ValueError(raw)
    return value
