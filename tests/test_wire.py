"""A lone surrogate is found in a JSON body before it is parsed, and in a value after."""

from __future__ import annotations

import json

import pytest

from parley.wire import escapes_lone_surrogate, holds_lone_surrogate

LONE = ["\ud800", "x\udfffy", "\ud800\ud800", "\udc00\ud800", "\U0001f600\ud800", "\\\ud800"]
NOT_LONE = ["", "plain", "\U0001f600", "\\ud800", "\\\\ud800", "\ud7ff\ue000", "C:\\u0041"]


@pytest.mark.parametrize("text", LONE)
def test_a_lone_surrogate_is_found_escaped_and_parsed(text: str) -> None:
    body = json.dumps({"k": [text]})
    assert escapes_lone_surrogate(body.encode())
    assert holds_lone_surrogate(json.loads(body))


@pytest.mark.parametrize("text", NOT_LONE)
def test_pairs_and_escaped_backslashes_are_not_lone_surrogates(text: str) -> None:
    body = json.dumps({"k": [text]})
    assert not escapes_lone_surrogate(body.encode())
    assert not holds_lone_surrogate(json.loads(body))


def test_a_lone_surrogate_in_a_key_is_found() -> None:
    body = json.dumps({"\udc00": 1})
    assert escapes_lone_surrogate(body.encode())
    assert holds_lone_surrogate(json.loads(body))
