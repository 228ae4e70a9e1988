"""The sidebar's archive: a conversation archived from its row leaves the list and shows under a
collapsible "Archived" (loaded with `status=archived` when opened), and comes back when unarchived."""

from __future__ import annotations

import pytest
from tests.conftest import Live
from tests.e2e.support import Page, expect, shoot

pytestmark = pytest.mark.e2e


async def _status(live: Live, cid: str) -> str:
    async with live.client() as http:
        status: str = (await http.get(f"/api/conversations/{cid}")).json()["status"]
    return status


async def test_archive_moves_a_conversation_under_archived_and_unarchive_brings_it_back(
    page: Page, live: Live
) -> None:
    async with live.client() as http:
        ids = {}
        for title in ("Old notes", "Trip", "Recipes"):
            ids[title] = (await http.post("/api/conversations", json={"title": title})).json()["id"]
        await http.patch(f"/api/conversations/{ids['Old notes']}", json={"status": "archived"})
    await page.reload()
    active = page.locator("#conversations > .conv .conv-title")
    archived = page.locator("#archived .conv .conv-title")
    await expect(active).to_have_text(["Recipes", "Trip"])
    await expect(archived).to_have_count(0)

    await page.locator("#conversations > .conv", has_text="Trip").hover()
    await page.get_by_role("button", name="Archive Trip", exact=True).click()
    await expect(active).to_have_text(["Recipes"])
    assert await _status(live, ids["Trip"]) == "archived"

    await page.locator("#archived > summary").click()
    await expect(archived).to_have_text(["Trip", "Old notes"])
    await shoot(page, "archived-section")

    await page.locator("#archived .conv", has_text="Old notes").hover()
    await page.get_by_role("button", name="Unarchive Old notes", exact=True).click()
    await expect(archived).to_have_text(["Trip"])
    await expect(active).to_have_text(["Old notes", "Recipes"])
    assert await _status(live, ids["Old notes"]) == "active"

    await page.locator("#archived .conv a", has_text="Trip").click()
    await expect(page.locator("#title")).to_have_text("Trip")
    await page.locator("#archived > summary").click()
    await expect(page.locator("#archived")).not_to_have_attribute("open", "")
