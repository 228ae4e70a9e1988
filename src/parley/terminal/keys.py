"""The keyboard while a reply streams: Ctrl+C at a safe moment, and no echo of what is typed."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import Any

Handler = Callable[[int, FrameType | None], Any] | int


class Interrupts:
    """Ctrl+C while a reply streams.

    It interrupts at once while the client waits (for parley's next event, for the person's
    answer); while the client writes to the terminal it is held and raised at the next wait. A
    ``KeyboardInterrupt`` in the middle of a write would leave rich's buffer written but not
    cleared, and the next write would show it twice.
    """

    def __init__(self) -> None:
        self.waiting = False
        self.pending = False
        self.previous: Handler = signal.default_int_handler

    def __enter__(self) -> Interrupts:
        self.pending = False
        previous = signal.signal(signal.SIGINT, self._on_interrupt)
        self.previous = signal.default_int_handler if previous is None else previous
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        signal.signal(signal.SIGINT, self.previous)

    @contextmanager
    def wait(self) -> Iterator[None]:
        """A wait that Ctrl+C cuts short, and where one pressed meanwhile is raised."""
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt
        self.waiting = True
        try:
            yield
        finally:
            self.waiting = False

    def _on_interrupt(self, signum: int, frame: FrameType | None) -> None:
        if self.waiting:
            raise KeyboardInterrupt
        self.pending = True


@contextmanager
def typing_shown(shown: bool) -> Iterator[None]:
    """The terminal echoes what is typed, or not, for the block (nothing to do off a terminal).
    Off while a reply streams: keys typed then (``^C`` too) would land inside the reply."""
    if sys.platform == "win32" or not sys.stdin.isatty():
        yield
        return
    import termios

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    mode = termios.tcgetattr(fd)
    mode[3] = mode[3] | termios.ECHO if shown else mode[3] & ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSANOW, mode)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)
