"""The table of a message's limits, on parts alone (the doors' tests hold every door to it)."""

from __future__ import annotations

import pytest

from parley.chat.messages import Part
from parley.config import Settings
from parley.engine.message_limits import MessageLimits, inline_bytes
from parley.errors import ValidationFailed

LIMITS = MessageLimits(chars=10, attachments=2, attachment_bytes=6)


def text(value: str) -> Part:
    return {"type": "text", "text": value}


def file(url: str, name: str | None = None) -> Part:
    part: Part = {"type": "file", "mediaType": "text/plain", "url": url}
    if name:
        part["filename"] = name
    return part


def test_the_limits_are_the_settings() -> None:
    settings = Settings(max_message_chars=5, max_attachments=1, max_attachment_bytes=9)
    assert MessageLimits.of(settings) == MessageLimits(chars=5, attachments=1, attachment_bytes=9)


@pytest.mark.parametrize(
    ("url", "size"),
    [
        ("data:text/plain;base64,aGVsbG8=", 5),
        ("data:text/plain;base64,aGVsbG8h", 6),
        ("DATA:text/plain;BASE64,aGk=", 2),
        ("data:text/plain,hello%20world", 11),
        ("data:,", 0),
        ("https://example.com/big.png", 0),
    ],
)
def test_a_file_part_counts_the_bytes_of_its_data_url(url: str, size: int) -> None:
    assert inline_bytes(file(url)) == size


def test_a_message_within_every_limit_passes() -> None:
    LIMITS.check([text("hello"), text("world"), file("data:,abcdef"), file("https://x/y")])


@pytest.mark.parametrize(
    ("parts", "words"),
    [
        ([text("hello"), text("world!")], "longer than 10 characters"),
        ([file("data:,a"), file("data:,b"), file("data:,c")], "at most 2 attachments"),
        ([file("data:,abcdefg", "notes.txt")], "attachment 'notes.txt' is over 6 bytes"),
        ([file("data:text/plain;base64,YWJjZGVmZw==")], "is over 6 bytes"),
    ],
)
def test_the_first_limit_a_message_goes_over_is_named(parts: list[Part], words: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        LIMITS.check(parts)
    assert words in refused.value.message
    assert refused.value.status == 400
