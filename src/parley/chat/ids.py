"""Time-ordered identifiers: sorting by id sorts by creation, across processes."""

from __future__ import annotations

import base64
import os
import time

# RFC 4648's base32 alphabet to Crockford's (lower case), which sorts as the values do
_CROCKFORD = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789abcdefghjkmnpqrstvwxyz"
)


def new_id(prefix: str) -> str:
    """``prefix_`` + 10 chars of milliseconds + 16 random chars (a ULID in Crockford base32).

    Both parts are 10 bytes, 16 base32 characters; of the time's, the last 10 (50 bits) are kept.
    """
    millis = time.time_ns() // 1_000_000
    raw = millis.to_bytes(10, "big") + os.urandom(10)
    return f"{prefix}_{base64.b32encode(raw)[6:].translate(_CROCKFORD).decode()}"
