"""GET /api/profiles (the profiles the page's picker offers, without their prompts) and GET
/api/limits (what one message may carry)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.conftest import Live

SECRET = "You are the in-house researcher; the vault code is 0000."


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "profiles": {
            "researcher": {
                "system_prompt": SECRET,
                "description": "reads papers",
                "model": "scripted/demo",
                "tools": ["search__*"],
            },
            "todo": {"system_prompt": SECRET, "description": "my own todo"},
        }
    }


async def test_profiles_lists_names_descriptions_and_models_and_no_prompt(live: Live) -> None:
    async with live.client() as http:
        response = await http.get("/api/profiles")
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert items == [
        {"name": "generalist", "description": "every tool", "model": None},
        {"name": "researcher", "description": "reads papers", "model": "scripted/demo"},
        {"name": "todo", "description": "my own todo", "model": None},
    ]
    assert SECRET not in response.text and "search__" not in response.text


async def test_profiles_needs_a_signed_in_caller(live: Live) -> None:
    async with live.client(None) as http:
        response = await http.get("/api/profiles")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "ERR_UNAUTHENTICATED"


@pytest.mark.parametrize(
    "settings_overrides", [{"max_attachments": 3, "max_attachment_bytes": 1000}]
)
async def test_limits_tell_what_one_message_may_carry(live: Live) -> None:
    async with live.client() as http:
        response = await http.get("/api/limits")
    assert response.json() == {
        "message_chars": 200_000,
        "attachments": 3,
        "attachment_bytes": 1000,
    }
