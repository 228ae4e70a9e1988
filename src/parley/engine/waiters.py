"""Futures keyed by id: how an answer from HTTP reaches the task waiting for it."""

from __future__ import annotations

import asyncio
from typing import Any


class Waiters:
    def __init__(self) -> None:
        self._futures: dict[str, asyncio.Future[dict[str, Any]]] = {}

    def expect(self, key: str) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._futures[key] = future
        return future

    def resolve(self, key: str, value: dict[str, Any]) -> bool:
        future = self._futures.get(key)
        if future is None or future.done():
            return False
        future.set_result(value)
        return True

    def forget(self, key: str) -> None:
        self._futures.pop(key, None)
