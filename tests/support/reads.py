"""Counting what a piece of work reads from the store: its statements, and the rows (messages,
ids) that the store's methods named hand back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from sqlalchemy import event

from parley.store import Store


class Reads:
    """``with reads:`` counts the statements run inside it, on every engine of the store, and
    the rows returned by the store methods in ``names`` (a list counts its length, anything
    else one)."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch, names: Sequence[str]) -> None:
        self.store = store
        self.statements = 0
        self.rows = 0
        for name in names:
            monkeypatch.setattr(store, name, self._counted(getattr(store, name)))

    def _counted(self, method: Callable[..., Any]) -> Callable[..., Any]:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            found = await method(*args, **kwargs)
            self.rows += len(found) if isinstance(found, list) else 1
            return found

        return counted

    def _statement(self, *args: Any) -> None:
        self.statements += 1

    def __enter__(self) -> Reads:
        self.statements = self.rows = 0
        for sync in self.store.sync_engines:
            event.listen(sync, "before_cursor_execute", self._statement)
        return self

    def __exit__(self, *exc: object) -> None:
        for sync in self.store.sync_engines:
            event.remove(sync, "before_cursor_execute", self._statement)
