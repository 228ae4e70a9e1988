"""The garbage collector's full collections, scheduled for quiet moments (``parley serve``)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable


class FullCollections:
    """The garbage collector's full collections at quiet moments instead of on allocation counts.

    A full collection walks every object the process tracks, mostly the open streams' own, and
    stops every stream while it does (bench/RESULTS.md). CPython starts one whenever the objects
    promoted to the oldest generation since the last exceed a quarter of those already there, so
    a server that opens streams at a steady rate ran one every few seconds, each a gap in every
    stream.

    Here the oldest generation is collected only if anything reached it since the last time
    (``gc.get_count()[2]``), at most every ``interval`` seconds, and then when no run is in
    progress (``busy()`` is 0, looked at every ``check`` seconds): between replies it stops
    nobody. Under load that never pauses, it is collected anyway once ``longest`` seconds have
    passed (ten intervals unless told). The young generations are collected as before; what
    they do not free waits for the next full collection, so memory levels off (raising all the
    thresholds instead let it grow for the length of the soak). Replies leave no reference
    cycles behind (tests/support/garbage.py), so little waits.
    """

    def __init__(
        self,
        interval: float,
        *,
        busy: Callable[[], int] = lambda: 0,
        longest: float | None = None,
        check: float = 1.0,
    ) -> None:
        self.interval = interval
        self.busy = busy
        self.longest = longest if longest is not None else 10 * interval
        self.check = min(check, interval) if interval > 0 else check
        self._saved = gc.get_threshold()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.interval <= 0:
            return
        young, middle, _ = self._saved
        gc.set_threshold(young, middle, 2**31 - 1)  # never started by CPython's counts
        self._task = asyncio.get_running_loop().create_task(self._collect())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            gc.set_threshold(*self._saved)

    async def _collect(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.check)
            waited = time.monotonic() - last
            if waited < self.interval or gc.get_count()[2] == 0:
                continue  # too soon, or nothing reached the oldest generation
            if self.busy() and waited < self.longest:
                continue  # streams would stop: wait for a quiet moment
            gc.collect()
            last = time.monotonic()
