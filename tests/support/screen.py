"""A program in a pseudo-terminal, read as a person sees it.

Its output goes through a terminal emulator (pyte) of a set size, so cursor moves, erased lines
and redraws count as they do on a screen; what scrolled off the top stays in the scrollback.
Waiting reads the program's output until the screen shows something, with a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pexpect
import pyte
from pyte.screens import Char


class Terminal:
    """A ``pexpect`` child and the screen its output draws."""

    def __init__(self, child: Any, columns: int, rows: int) -> None:
        self.child = child
        self.columns = columns
        self.screen = pyte.HistoryScreen(columns, rows, history=10_000)
        self.stream = pyte.Stream(self.screen)

    # what is shown ---------------------------------------------------------------------------

    def rows(self) -> list[list[Char]]:
        """Every line the person can see or scroll back to, as cells."""
        lines = [
            *self.screen.history.top,
            *(self.screen.buffer[y] for y in range(self.screen.lines)),
        ]
        return [[line[x] for x in range(self.columns)] for line in lines]

    def lines(self) -> list[str]:
        return ["".join(cell.data for cell in row).rstrip() for row in self.rows()]

    def text(self) -> str:
        return "\n".join(self.lines()).strip("\n")

    def cells(self, word: str) -> list[Char]:
        """The cells of ``word`` where the screen first shows it."""
        for row, line in zip(self.rows(), self.lines(), strict=True):
            at = line.find(word)
            if at >= 0:
                return row[at : at + len(word)]
        raise AssertionError(f"the terminal does not show {word!r}:\n{self.text()}")

    # waiting ---------------------------------------------------------------------------------

    async def shows(self, text: str, times: int = 1, timeout: float = 10) -> None:
        """Until ``text`` is on the screen (``times`` times, scrollback included)."""
        shown = lambda: self.text().count(text) >= times  # noqa: E731
        await asyncio.to_thread(self._wait, shown, repr(text), timeout)

    def _wait(self, shown: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not shown():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the terminal never showed {what}; it shows:\n{self.text()}")
            try:
                self.stream.feed(self.child.read_nonblocking(65_536, timeout=left))
            except pexpect.TIMEOUT:
                continue

    # typing ----------------------------------------------------------------------------------

    async def type(self, line: str) -> None:
        await asyncio.to_thread(self.child.sendline, line)

    async def interrupt(self) -> None:
        await asyncio.to_thread(self.child.sendintr)

    async def ended(self, timeout: float = 10) -> int:
        """Read to the end of the program's output; its exit status."""
        while True:
            try:
                data = await asyncio.to_thread(self.child.read_nonblocking, 65_536, timeout)
            except pexpect.EOF:
                break
            self.stream.feed(data)
        await asyncio.to_thread(self.child.close)
        return int(self.child.exitstatus)
