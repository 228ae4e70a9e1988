"""A child process's output read line by line on a thread, waited for with a deadline."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


class Lines:
    """The lines a stream gives, in order; :meth:`wait_for` a pattern without sleeping."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[bytes]) -> None:
        with stream:
            for raw in stream:
                self._queue.put(raw.decode(errors="replace"))
        self._queue.put(None)

    def join(self, timeout: float = 10.0) -> None:
        """Wait until the stream has ended (and been closed)."""
        self._reader.join(timeout)

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        """The first line from now on that matches ``pattern``; fails at the deadline or the end."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no {pattern!r} within {timeout} s:\n{self.text}") from None
            if line is None:
                raise AssertionError(f"the output ended without {pattern!r}:\n{self.text}")
            self.seen.append(line)
            if match := regex.search(line):
                return match

    @property
    def text(self) -> str:
        return "".join(self.seen)


@contextmanager
def parley(*args: str, env: dict[str, str], cwd: Path) -> Iterator[Lines]:
    """``python -m parley *args``, its stdout and stderr as one :class:`Lines`; stopped after."""
    process = subprocess.Popen(
        [sys.executable, "-m", "parley", *args],
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    lines = Lines(process.stdout)
    try:
        yield lines
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        lines.join()
