"""File parts are checked and stored in one form, whichever door a file came through."""

from __future__ import annotations

import base64

import pytest

from parley.chat.files import UnreadableFile, file_part, read_data_url
from parley.errors import ValidationFailed


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("url", "media_type", "data"),
    [
        ("data:text/plain,hello", "text/plain", b"hello"),
        ("data:text/plain,abcd", "text/plain", b"abcd"),  # base64-shaped, but text
        ("data:,a%20b%F0%9F%98%80", "", "a b\N{GRINNING FACE}".encode()),
        ("data:text/plain;charset=utf-8;base64,aGk=", "text/plain", b"hi"),
        ("DATA:Image/PNG;BASE64,aGk=", "image/png", b"hi"),
        ("data:text/plain;base64,aGk%3D", "text/plain", b"hi"),  # percent-encoded padding
        ("data:text/plain;base64,", "text/plain", b""),
    ],
)
def test_a_data_url_is_read_by_rfc_2397(url: str, media_type: str, data: bytes) -> None:
    inline = read_data_url(url)
    assert (inline.media_type, inline.data) == (media_type, data)


@pytest.mark.parametrize(
    "url",
    [
        "data:text/plain;base64,aGk",
        "data:text/plain;base64,a Gk=",
        "data:text/plain;base64,aGk=\n",
        "data:text/plain;base64,!!!!",
        "data:text/plain,50%",
        "data:text/plain,%zz",
        "data:text/plain",
        "https://example.com/a.png",
    ],
)
def test_a_malformed_data_url_is_unreadable(url: str) -> None:
    with pytest.raises(UnreadableFile):
        read_data_url(url)


def test_inline_data_is_stored_as_base64_under_the_parts_media_type() -> None:
    part = file_part(
        url="data:text/plain,hello", media_type="Text/Plain; charset=x", filename="a.txt", field="f"
    )
    assert part == {
        "type": "file",
        "mediaType": "text/plain",
        "url": f"data:text/plain;base64,{_b64(b'hello')}",
        "filename": "a.txt",
    }
    from_data = file_part(url=None, data=_b64(b"hello"), media_type="text/plain", field="f")
    assert from_data["url"] == part["url"]


def test_a_link_is_kept_as_it_is() -> None:
    url = "https://example.com/cat.png?size=2"
    assert file_part(url=url, media_type="image/png", field="f")["url"] == url


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"url": "data:text/plain;base64,aGk"}, "attachments[0].url"),
        ({"url": None, "data": "aGk"}, "attachments[0].data"),
        ({"url": None, "data": 5}, "attachments[0].data"),
        ({"url": "javascript:alert(1)"}, "attachments[0].url"),
        ({"url": "file:///etc/passwd"}, "attachments[0].url"),
        ({"url": "https:///no-host"}, "attachments[0].url"),
        ({"url": "https://a.example/b c"}, "attachments[0].url"),
        ({"url": ["x"]}, "attachments[0].url"),
        ({"url": None}, "attachments[0]"),
        ({"url": "data:,x", "data": "aGk="}, "attachments[0]"),
        ({"url": "data:,x", "media_type": "plain"}, "attachments[0]"),
        ({"url": "data:,x", "media_type": 5}, "attachments[0]"),
        ({"url": "data:,x", "filename": "a\nb"}, "attachments[0]"),
        ({"url": "data:,x", "filename": "x" * 256}, "attachments[0]"),
    ],
)
def test_a_file_that_cannot_be_read_is_a_400_naming_its_field(
    given: dict[str, object], named: str
) -> None:
    fields: dict[str, object] = {"media_type": "text/plain", **given}
    with pytest.raises(ValidationFailed) as caught:
        file_part(**fields, field="attachments[0]")  # type: ignore[arg-type]
    assert caught.value.status == 400
    assert caught.value.message.startswith(f"{named}: ")
    assert caught.value.extra["field"] == named
