"""File parts: a client's file checked and put in one stored form, once, for every door.

A file part is ``{"type": "file", "mediaType", "url", "filename"?}``. Its ``url`` is a link
(``http:`` or ``https:``), passed on to the model as it is, or inline data, always stored as
``data:<media type>;base64,<base64>``. Clients send inline data as base64 or as RFC 2397
percent-encoded text (``data:text/plain,hello``): :func:`read_data_url` decodes either by the
standard library's rules, with base64 checked strictly, so the model reads what the client
sent. History reads stored URLs back with the same function.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes, urlsplit

from parley.chat.messages import FileUIPart
from parley.errors import ValidationFailed

_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")
_BROKEN_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_LINK_SCHEMES = ("http", "https")


class UnreadableFile(ValueError):
    """A file's URL or data that cannot be read; the message says why."""


@dataclass(frozen=True)
class InlineData:
    """The content of a ``data:`` URL: its own media type (``""`` if it names none) and bytes."""

    media_type: str
    data: bytes

    def url(self, media_type: str) -> str:
        """The stored form: ``data:<media type>;base64,<base64>``."""
        return f"data:{media_type};base64,{base64.b64encode(self.data).decode('ascii')}"


def read_data_url(url: str) -> InlineData:
    """Decode an RFC 2397 ``data:`` URL; :class:`UnreadableFile` when it is not one."""
    if url[:5].lower() != "data:":
        raise UnreadableFile("is not a data: URL")
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise UnreadableFile("has no comma before its data")
    if _BROKEN_ESCAPE.search(payload):
        raise UnreadableFile("has a % not followed by two hex digits")
    params = [p.strip().lower() for p in header.split(";")]
    raw = unquote_to_bytes(payload)
    data = strict_base64(raw) if params[-1] == "base64" else raw
    return InlineData(media_type=params[0], data=data)


def strict_base64(text: str | bytes) -> bytes:
    """Base64 with its padding and nothing outside its alphabet (no spaces, no line breaks)."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise UnreadableFile("is not valid base64") from None


def file_part(
    *, url: object, media_type: object, filename: object = None, data: object = None, field: str
) -> FileUIPart:
    """The stored part for one file a client sent (a URL, or base64 ``data``), or
    :class:`ValidationFailed` naming ``field`` (where the door's body holds the file)."""
    kind = _media_type(media_type, field)
    part: FileUIPart = {"type": "file", "mediaType": kind, "url": _url(url, data, kind, field)}
    if filename is not None:
        if not isinstance(filename, str) or len(filename) > 255 or not filename.isprintable():
            raise _invalid(field, "its file name must be printable text of at most 255 characters")
        if filename:
            part["filename"] = filename
    return part


def _url(url: object, data: object, media_type: str, field: str) -> str:
    if (url is None) == (data is None):
        raise _invalid(field, "give url or data (one of them)")
    try:
        if data is not None:
            if not isinstance(data, str):
                raise UnreadableFile("must be base64 text")
            return InlineData("", strict_base64(data)).url(media_type)
        if not isinstance(url, str):
            raise UnreadableFile("must be a data: URL or an http(s) link")
        if url[:5].lower() == "data:":
            return read_data_url(url).url(media_type)
        return _link(url)
    except UnreadableFile as exc:
        raise _invalid(f"{field}.{'data' if data is not None else 'url'}", str(exc)) from None


def _link(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in _LINK_SCHEMES or not parts.hostname:
        raise UnreadableFile("must be a data: URL or an http(s) link")
    if not url.isprintable() or " " in url:
        raise UnreadableFile("has spaces or control characters")
    return url


def _media_type(value: object, field: str) -> str:
    kind = value.split(";", 1)[0].strip().lower() if isinstance(value, str) else ""
    if not _MEDIA_TYPE.fullmatch(kind):
        raise _invalid(field, "its media type must be a type/subtype such as text/plain")
    return kind


def _invalid(field: str, problem: str) -> ValidationFailed:
    return ValidationFailed(f"{field}: {problem}", field=field)
