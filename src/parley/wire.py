"""JSON as parley writes it on the wire, and the one thing it refuses to read from a client.

Every door's frames and the model requests use :data:`compact`; it is a ``functools.partial``
of :func:`json.dumps` (a C-level call: it runs once per streamed event), so ``json.dumps``'s
other keyword arguments still apply (``compact(body, allow_nan=False)``).

JSON may escape half of a surrogate pair alone (``"\\ud800"``); Python reads it into a string
that no UTF-8 encoder, no database and no frame can take. :func:`escapes_lone_surrogate` finds
one in a body before it is parsed, :func:`holds_lone_surrogate` in a value already parsed.
"""

from __future__ import annotations

import functools
import json
import re

compact = functools.partial(json.dumps, ensure_ascii=False, separators=(",", ":"))

LONE_SURROGATE = "a lone surrogate (\\ud800 without its pair) is not text"

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_ESCAPE = re.compile(rb"\\(?:u([0-9a-fA-F]{4})|.)", re.DOTALL)
_SURROGATE = re.compile("[\ud800-\udfff]")


def escapes_lone_surrogate(body: bytes) -> bool:
    """Whether JSON text escapes a surrogate that is not half of a pair. The escapes are read
    in order, as a parser reads them, so ``"\\\\ud800"`` (a backslash, then text) is not one."""
    if not _SURROGATE_ESCAPE.search(body):
        return False
    high_ends = -1  # where the escape of a high surrogate just read ends
    for escape in _ESCAPE.finditer(body):
        code = int(escape[1], 16) if escape[1] else 0
        if high_ends >= 0:
            if escape.start() != high_ends or not 0xDC00 <= code <= 0xDFFF:
                return True
            high_ends = -1
        elif 0xD800 <= code <= 0xDBFF:
            high_ends = escape.end()
        elif 0xDC00 <= code <= 0xDFFF:
            return True
    return high_ends >= 0


def holds_lone_surrogate(value: object) -> bool:
    """Whether a parsed JSON value has a lone surrogate in any of its strings or keys (a pair
    that was escaped is one character by then, so any surrogate left is alone)."""
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(holds_lone_surrogate(k) or holds_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(holds_lone_surrogate(item) for item in value)
    return False
