"""The pieces of the terminal's output: markdown blocks, and text broken at word boundaries."""

from __future__ import annotations

import io

from rich.console import Console

from parley.terminal.output import Wrapped, split_blocks


def test_finished_blocks_are_those_another_block_followed() -> None:
    text = "# Title\n\nA paragraph\non two lines.\n\nThe last one is still"
    assert split_blocks(text) == (
        ["# Title", "A paragraph\non two lines."],
        "The last one is still",
    )


def test_a_code_block_with_blank_lines_and_a_loose_list_stay_whole() -> None:
    code = "```python\ndef f():\n\n    return 1\n```"
    loose = "1. one\n\n2. two"
    done, rest = split_blocks(f"{code}\n\n{loose}\n\nafter")
    assert done == [code, loose]
    assert rest == "after"
    assert split_blocks("```\nstill open\n\nmore") == ([], "```\nstill open\n\nmore")


def written(width: int | None, *chunks: str) -> str:
    out = io.StringIO()
    stream = Wrapped(Console(file=out, width=80, color_system=None), width)
    for chunk in chunks:
        stream.feed(chunk)
    stream.close()
    return out.getvalue()


def test_streamed_text_breaks_before_a_word_that_would_cross_the_width() -> None:
    chunks = ["The quick br", "own fox jum", "ps over the la", "zy dog.\nNew line ", "here."]
    assert (
        written(16, *chunks) == "The quick brown\nfox jumps over\nthe lazy dog.\nNew line here.\n"
    )


def test_a_word_longer_than_the_width_is_cut_and_a_pipe_gets_the_text_as_it_came() -> None:
    assert written(5, "abcdefghij", " k") == "abcde\nfghij\nk\n"
    assert written(None, "no  wrapping ", "at all") == "no  wrapping at all\n"
