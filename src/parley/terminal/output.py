"""What the terminal shows while a reply streams.

In a terminal that can move its cursor, a reply's markdown is rendered with rich as it streams:
each block (paragraph, heading, list, code block, table) is printed once, rendered, when the next
one begins, and the block being written is redrawn below them (a transient ``Live``, at most a
screenful: its last lines). What has been printed stays in the scrollback, so a person can scroll
up while a reply streams, and nothing above the block being written is ever redrawn.

Elsewhere (a dumb terminal, a pipe, a file) the text is written as it comes: broken at word
boundaries at the terminal's width when it is a terminal, untouched otherwise.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable
from typing import Literal, Protocol

from markdown_it import MarkdownIt
from rich.cells import cell_len, chop_cells
from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.markdown import Markdown
from rich.segment import Segment
from rich.status import Status

Kind = Literal["content", "reasoning"]
Lines = list[list[Segment]]

# the parser rich's Markdown uses, to find where its blocks begin and end
_BLOCKS = MarkdownIt("commonmark").enable("strikethrough").enable("table")
_TOKENS = re.compile(r"\n|[^\S\n]+|\S+")


class TextStream(Protocol):
    def feed(self, text: str) -> None: ...

    def close(self) -> None: ...


class Wrapped:
    """Text written as it comes, a line broken before a word that would cross ``width``.

    The word still being written is held back until a space or a line break ends it; so are the
    spaces after a word, which are dropped where the line breaks. ``width=None`` writes the text
    untouched (a pipe or a file has no width)."""

    def __init__(self, console: Console, width: int | None, style: str | None = None) -> None:
        self.console = console
        self.width = width
        self.style = style
        self.column = 0
        self.space = ""
        self.word = ""

    def feed(self, text: str) -> None:
        if self.width is None:
            self._write(text)
            return
        tokens = _TOKENS.findall(self.word + text.replace("\t", "    "))
        self.word = tokens.pop() if tokens and not tokens[-1].isspace() else ""
        for token in tokens:
            self._put(token)

    def close(self) -> None:
        if self.word:
            self._put(self.word)
            self.word = ""
        if self.column:
            self._write("\n")

    def _put(self, token: str) -> None:
        if token == "\n":
            self._write("\n")
        elif token.isspace() and self.column:
            self.space += token
        else:
            self._word(token)

    def _word(self, word: str) -> None:
        assert self.width is not None
        if self.column and self.column + cell_len(self.space + word) > self.width:
            self._write("\n")
        word = self.space + word if self.column else word
        self.space = ""
        pieces = chop_cells(word, max(self.width - self.column, 1))
        for piece in pieces[:-1]:
            self._write(piece + "\n")
        self._write(pieces[-1])

    def _write(self, text: str) -> None:
        self.console.out(text, style=self.style, highlight=False, end="")
        tail = text.rpartition("\n")
        self.column = cell_len(tail[2]) + (0 if tail[1] else self.column)
        if tail[1]:
            self.space = ""


def split_blocks(text: str) -> tuple[list[str], str]:
    """The markdown blocks of ``text`` that are finished (another began after them), and the
    rest, from the start of its last block: more text may still make that block longer."""
    lines = text.split("\n")
    spans = [t.map for t in _BLOCKS.parse(text) if t.level == 0 and t.nesting >= 0 and t.map]
    if not spans:
        return [], text
    done = ["\n".join(lines[start:end]).rstrip("\n") for start, end in spans[:-1]]
    return done, "\n".join(lines[spans[-1][0] :])


def all_blocks(text: str) -> list[str]:
    done, rest = split_blocks(text)
    return [*done, rest] if rest.strip() else done


def render_block(console: Console, block: str, width: int) -> Lines:
    """One markdown block as rich renders it, without the blank lines around it."""
    options = console.options.update(width=width, height=None)
    lines = console.render_lines(Markdown(block, hyperlinks=False), options, pad=False)
    while lines and _blank(lines[0]):
        lines.pop(0)
    while lines and _blank(lines[-1]):
        lines.pop()
    return lines


def _blank(line: list[Segment]) -> bool:
    """A line with nothing to see: no text and no background (a code block's padding has one)."""
    return all(not s.text.strip() and not (s.style and s.style.bgcolor) for s in line)


class Rendered:
    """Markdown blocks rendered with a blank line between them; ``tail``: only the last lines
    that fit the screen, for a live region that must never be taller than the screen."""

    def __init__(self, blocks: Iterable[str], *, gap_before: bool, tail: bool = False) -> None:
        self.blocks = list(blocks)
        self.gap_before = gap_before
        self.tail = tail

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines: Lines = []
        for number, block in enumerate(self.blocks):
            if number or self.gap_before:
                lines.append([])
            lines.extend(render_block(console, block, options.max_width))
        if self.tail:
            lines = lines[-max(console.height - 1, 1) :]
        for line in lines:
            yield from line
            yield Segment.line()


class MarkdownStream:
    """A reply's markdown as it streams, in a terminal that can move its cursor.

    The live region is redrawn at most 12 times a second: at once when text comes after a
    pause, by a ticker thread for the end of a burst. Both take ``guard`` around every write, so
    a redraw never lands in the middle of the finished blocks being printed above the region
    (rich's own refresh thread would: a print renders the region outside the Live's lock)."""

    interval = 1 / 12

    def __init__(self, console: Console) -> None:
        self.console = console
        self.pending = ""  # the text from the start of the block being written
        self.printed = False
        self.changed = False
        self.drawn_at = 0.0
        self.guard = threading.Lock()
        self.done = threading.Event()
        self.live = Live(
            _Pending(self),
            console=console,
            auto_refresh=False,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.live.start()
        self.ticker = threading.Thread(target=self._tick, daemon=True, name="parley-live")
        self.ticker.start()

    def feed(self, text: str) -> None:
        with self.guard:
            self.pending += text
            self.changed = True
            if "\n" in text:
                done, self.pending = split_blocks(self.pending)
                self._print(done)
            if time.monotonic() - self.drawn_at >= self.interval:
                self._draw()

    def close(self) -> None:
        """The text is complete: the rest is printed rendered, the live region goes."""
        self.done.set()
        self.ticker.join()
        rest, self.pending = all_blocks(self.pending), ""
        try:
            self._print(rest)
        finally:
            self.live.stop()

    def _print(self, blocks: list[str]) -> None:
        """Print finished blocks above the live region, which is redrawn in the same write."""
        if blocks:
            gap, self.printed = self.printed, True  # the region below is drawn with its gap
            self.console.print(Rendered(blocks, gap_before=gap))

    def _tick(self) -> None:
        while not self.done.wait(self.interval):
            with self.guard:
                if self.changed and not self.done.is_set():
                    self._draw()

    def _draw(self) -> None:
        self.changed, self.drawn_at = False, time.monotonic()
        self.live.refresh()


class _Pending:
    """The live region: the block being written, read when the region is drawn."""

    def __init__(self, stream: MarkdownStream) -> None:
        self.stream = stream

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        pending = self.stream.pending
        blocks = [pending] if pending.strip() else []
        yield Rendered(blocks, gap_before=self.stream.printed, tail=True)


class Output:
    """The spinner and the text streams of one reply: one of them shows at a time."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.status: Status | None = None
        self.text: TextStream | None = None
        self.kind: Kind | None = None

    def spin(self, text: str) -> None:
        self.end_text()
        self.stop_spinning()
        self.status = self.console.status(text, spinner="dots")
        self.status.start()

    def stop_spinning(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None

    def stream(self, kind: Kind, text: str) -> None:
        """More of the reply's text (``content``) or of its reasoning."""
        self.stop_spinning()
        if self.text is None or self.kind != kind:
            self.end_text()
            self.text, self.kind = self._open(kind), kind
        self.text.feed(text)

    def end_text(self) -> None:
        """The text stream ends: closing it again after an interrupted close finishes it."""
        if self.text is not None:
            self.text.close()
            self.text, self.kind = None, None

    def line(self, markup: str) -> None:
        self.end_text()
        self.stop_spinning()
        self.console.print(markup, highlight=False)

    def close(self) -> None:
        self.end_text()
        self.stop_spinning()

    def _open(self, kind: Kind) -> TextStream:
        if kind == "content" and self.console.is_interactive:
            return MarkdownStream(self.console)
        width = self.console.width if self.console.is_terminal else None
        return Wrapped(self.console, width, "dim italic" if kind == "reasoning" else None)
