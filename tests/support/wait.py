"""Waiting for a condition another process or task will make true (bounded)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(predicate: Callable[[], bool], *, timeout: float = 5.0, step: float = 0.02) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds."""
    for _ in range(max(1, int(timeout / step))):
        if predicate():
            return
        await asyncio.sleep(step)
    raise TimeoutError(f"condition not met within {timeout} s")
