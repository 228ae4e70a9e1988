"""Checkpoints of streaming replies, written together.

Every streaming reply is saved about once a second (DESIGN.md section 5). One transaction per
reply costs a commit and a turn at SQLite's single writer each; with hundreds of replies at once
that queue held streams back. Here a reply hands its parts over and goes on; one writer task
saves whatever was handed over meanwhile in a single transaction, the newest parts of each reply.
"""

from __future__ import annotations

import asyncio

import structlog

from parley.chat.messages import Part
from parley.store.turns import TurnStore

log = structlog.get_logger("parley.store")


class CheckpointWriter:
    def __init__(self, store: TurnStore) -> None:
        self.store = store
        self._waiting: dict[str, tuple[str, list[Part]]] = {}
        self._saving: dict[str, asyncio.Event] = {}
        self._writer: asyncio.Task[None] | None = None

    def submit(self, user_id: str, message_id: str, parts: list[Part]) -> None:
        """Save these parts soon; newer parts for the same reply replace older ones."""
        self._waiting[message_id] = (user_id, parts)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="parley checkpoints")

    async def settle(self, message_id: str) -> None:
        """Drop the reply's unsaved checkpoint and wait for one being saved: the caller is about
        to write the reply itself, and an older checkpoint must not land after that."""
        self._waiting.pop(message_id, None)
        saving = self._saving.get(message_id)
        if saving is not None:
            await saving.wait()

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, {}
            done = asyncio.Event()
            self._saving.update(dict.fromkeys(batch, done))
            try:
                replies = [(user, message, parts) for message, (user, parts) in batch.items()]
                await self.store.checkpoint_many(replies)
            except Exception:
                log.warning("checkpoint_failed", replies=len(batch), exc_info=True)
            finally:
                for message_id in batch:
                    self._saving.pop(message_id, None)
                done.set()

    async def aclose(self) -> None:
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
