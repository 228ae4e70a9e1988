"""Projects on the chat page (issue 26): the sidebar's "Projects" with the caller's role in each; a
chosen project lists its conversations and a new chat starts in it, while "My chats" lists the
caller's own conversations outside any project; the members dialog, where an admin adds, changes
and removes members and renames or deletes the project; a member with the read role reads but
the composer is closed, saying why."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.conftest import Live
from tests.e2e.support import (
    Browser,
    Page,
    expect,
    last_reply,
    new_context,
    send,
    shoot,
    wait_status,
)

from parley.providers.scripted import ScriptedProvider

pytestmark = pytest.mark.e2e

# Chromium logs a request answered with an error status itself; the page logs nothing
REFUSED = re.compile(r"^Failed to load resource: the server responded with a status of (\d+)")


def _errors(page: Page) -> list[str]:
    """The console's errors and the page's uncaught exceptions, from now on."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


@pytest.fixture
async def bob(browser: Browser, live: Live) -> AsyncIterator[Page]:
    """A second person, bob, signed in in a browser context of his own."""
    context = await new_context(browser, live, user="bob")
    opened = await context.new_page()
    yield opened
    await context.close()


async def _projects(live: Live, user: str) -> list[tuple[str, str]]:
    async with live.client(user) as http:
        items = (await http.get("/api/projects")).json()["items"]
    return [(p["name"], p["role"]) for p in items]


async def _conversation(live: Live, cid: str, user: str = "alice") -> dict[str, Any]:
    async with live.client(user) as http:
        convo: dict[str, Any] = (await http.get(f"/api/conversations/{cid}")).json()
    return convo


def _open_id(page: Page) -> str:
    return page.url.split("#/c/")[1]


async def _create_project(page: Page, name: str) -> None:
    await page.locator("#new-project").click()
    dialog = page.locator("#project-dialog")
    await dialog.get_by_label("Name").fill(name)
    await dialog.get_by_role("button", name="Create").click()
    await expect(dialog).to_have_count(0)
    await expect(page.locator("#projects .proj-scope-name")).to_have_text(name)


async def test_alice_shares_a_project_bob_reads_then_writes_then_it_leaves_his_sidebar(
    page: Page, bob: Page, live: Live, scripted: ScriptedProvider
) -> None:
    alice_errors, bob_errors = _errors(page), _errors(bob)
    scripted.enqueue([{"text": "Hello alice."}], [{"text": "Hello bob."}])
    await _create_project(page, "Apollo")
    await expect(page.locator("#projects .proj .proj-role")).to_have_text(["admin"])
    await expect(page.locator("#project .project-name")).to_have_text("Apollo")
    await send(page, "Plan the launch")
    await wait_status(page, "complete")
    await expect(page.locator("#conversations .conv-title")).to_have_text(["Plan the launch"])
    cid = _open_id(page)
    assert (await _conversation(live, cid))["project_id"] is not None

    members = page.locator("#members-dialog")
    await page.locator("#project").click()
    await expect(members.locator(".member-id")).to_have_text(["alice"])
    await members.get_by_label("User id").fill("bob")
    await members.get_by_label("Role of the new member").select_option("read")
    await members.get_by_role("button", name="Add").click()
    await expect(members.locator(".member-id")).to_have_text(["alice", "bob"])
    await expect(members.get_by_label("Role of bob")).to_have_value("read")
    assert await _projects(live, "bob") == [("Apollo", "read")]
    await shoot(page, "projects-members-admin")
    await page.keyboard.press("Escape")

    await bob.goto("/")
    await expect(bob.locator("#projects .proj .conv-title")).to_have_text(["Apollo"])
    await expect(bob.locator("#projects .proj .proj-role")).to_have_text(["read"])
    await expect(bob.locator("#conversations .conv-empty")).to_be_visible()  # his own: none
    await bob.locator("#projects .proj-open", has_text="Apollo").click()
    await expect(bob.locator("#composer-note")).to_contain_text("read role in Apollo")
    await expect(bob.locator("#input")).to_be_disabled()  # a new chat would be a 403 too
    await bob.locator("#conversations .conv-open", has_text="Plan the launch").click()
    await expect(last_reply(bob)).to_contain_text("Hello alice.")
    await expect(bob.locator("#input")).to_be_disabled()
    await expect(bob.locator("#send")).to_be_disabled()
    await expect(bob.locator("#composer-note")).to_contain_text("read role in Apollo")
    await expect(bob.locator("#conversations .conv .conv-acts")).to_have_count(0)
    await bob.locator("#project").click()
    bob_members = bob.locator("#members-dialog")
    await expect(bob_members.locator(".member-role")).to_have_text(["admin", "read"])
    await expect(bob_members.locator("select, input, button.btn")).to_have_count(0)
    await shoot(bob, "projects-read-only")
    await bob.keyboard.press("Escape")

    await page.locator("#projects .proj", has_text="Apollo").hover()
    await page.get_by_role("button", name="Members of Apollo").click()
    await members.get_by_label("Role of bob").select_option("write")
    await expect(members.locator('.member[data-user="bob"] .muted')).to_have_text("also sends")
    assert await _projects(live, "bob") == [("Apollo", "write")]
    await bob.reload()
    await expect(bob.locator("#input")).to_be_enabled()
    await expect(bob.locator("#composer-note")).to_be_hidden()
    await send(bob, "Count me in")
    await expect(last_reply(bob)).to_contain_text("Hello bob.")
    await wait_status(bob, "complete")
    messages = (await _conversation(live, cid))["messages"]
    said = ["".join(p.get("text", "") for p in m["parts"]) for m in messages]
    assert said == ["Plan the launch", "Hello alice.", "Count me in", "Hello bob."]

    await members.get_by_role("button", name="Remove bob").click()
    await expect(members.locator(".member-id")).to_have_text(["alice"])
    assert await _projects(live, "bob") == []
    await bob.goto("/")
    await expect(bob.locator("#projects .conv-empty")).to_contain_text("No projects yet")
    await expect(bob.locator("#projects .proj")).to_have_count(0)
    assert alice_errors == [] and bob_errors == []


async def test_a_chat_made_in_a_project_is_listed_there_and_not_in_my_chats(
    page: Page, live: Live, scripted: ScriptedProvider
) -> None:
    """ "My chats" lists the caller's own conversations outside any project."""
    errors = _errors(page)
    scripted.enqueue([{"text": "Own reply."}], [{"text": "Project reply."}])
    async with live.client() as http:
        made = await http.post("/api/projects", json={"name": "Zeus"})
        project_id = made.json()["id"]
    await page.reload()
    titles = page.locator("#conversations > .conv .conv-title")
    await expect(page.locator("#projects .proj-scope-name")).to_have_text("My chats")
    await send(page, "My own question")
    await wait_status(page, "complete")
    own_id = _open_id(page)
    await expect(titles).to_have_text(["My own question"])

    await page.locator("#projects .proj-open", has_text="Zeus").click()
    await expect(page.locator("#conversations .conv-empty")).to_have_text(
        "No chats in this project yet."
    )
    await expect(page.locator("#title")).to_have_text("New chat")
    await send(page, "Project question")
    await expect(last_reply(page)).to_contain_text("Project reply.")
    await wait_status(page, "complete")
    project_cid = _open_id(page)
    assert (await _conversation(live, project_cid))["project_id"] == project_id
    assert (await _conversation(live, own_id))["project_id"] is None
    await expect(titles).to_have_text(["Project question"])
    await page.locator("#search").fill("question")
    await expect(titles).to_have_text(["Project question"])
    await shoot(page, "projects-sidebar")

    await page.locator("#my-chats").click()
    await expect(page.locator("#projects .proj-scope-name")).to_have_text("My chats")
    await expect(titles).to_have_text(["My own question"])
    await expect(page.locator("#project")).to_be_hidden()
    await page.locator("#search").fill("")
    await expect(titles).to_have_text(["My own question"])

    await page.goto(f"/#/c/{project_cid}")
    await page.reload()
    await expect(page.locator("#title")).to_have_text("Project question")
    await expect(page.locator("#projects .proj-scope-name")).to_have_text("Zeus")
    await expect(titles).to_have_text(["Project question"])
    await page.locator("#conversations > .conv", has_text="Project question").hover()
    await page.get_by_role("button", name="Archive Project question", exact=True).click()
    await expect(page.locator("#conversations .conv-empty")).to_be_visible()
    await page.locator("#archived > summary").click()
    await expect(page.locator("#archived .conv .conv-title")).to_have_text(["Project question"])
    await page.locator("#my-chats").click()
    await expect(titles).to_have_text(["My own question"])
    await page.locator("#archived > summary").click()
    await expect(page.locator("#archived .conv-empty")).to_have_text("Nothing archived.")
    assert errors == []


async def test_the_members_dialog_says_what_the_api_refuses_and_renames_and_deletes(
    page: Page, live: Live
) -> None:
    errors = _errors(page)
    await _create_project(page, "Hermes")
    members = page.locator("#members-dialog")
    await page.locator("#project").click()
    await members.get_by_label("Role of alice").select_option("write")
    await expect(members.get_by_role("alert")).to_have_text(
        "Could not change the role of alice: a project keeps at least one admin"
    )
    await expect(members.get_by_label("Role of alice")).to_have_value("admin")
    assert await _projects(live, "alice") == [("Hermes", "admin")]

    await members.get_by_label("Project name").fill("Hermes II")
    await members.get_by_role("button", name="Rename").click()
    await expect(members.locator(".dialog-title")).to_have_text("Hermes II · members")
    await expect(members.get_by_role("alert")).to_be_hidden()
    await expect(page.locator("#projects .proj .conv-title")).to_have_text(["Hermes II"])
    await expect(page.locator("#project .project-name")).to_have_text("Hermes II")

    await members.get_by_role("button", name="Delete project").click()
    await members.get_by_role("button", name="Delete", exact=True).click()
    await expect(members).to_have_count(0)
    await expect(page.locator("#projects .proj")).to_have_count(0)
    await expect(page.locator("#projects .proj-scope-name")).to_have_text("My chats")
    await expect(page.locator("#project")).to_be_hidden()
    assert await _projects(live, "alice") == []

    async with live.client("alice") as alice, live.client("bob") as bob:
        project_id = (await alice.post("/api/projects", json={"name": "Iris"})).json()["id"]
        await alice.put(f"/api/projects/{project_id}/members/bob", json={"role": "admin"})
        await page.reload()
        await page.locator("#projects .proj", has_text="Iris").hover()
        await page.get_by_role("button", name="Members of Iris").click()
        await bob.put(f"/api/projects/{project_id}/members/alice", json={"role": "write"})
    await members.get_by_role("button", name="Remove bob").click()  # her dialog is stale
    await expect(members.get_by_role("alert")).to_have_text(
        "Could not remove bob: this needs the admin role in the project"
    )
    await expect(members.locator(".member-id")).to_have_text(["alice", "bob"])
    statuses = [REFUSED.match(e) for e in errors]
    refused = [m.group(1) if m else e for m, e in zip(statuses, errors, strict=True)]
    assert refused == ["409", "403"]
