"""Conversations: create, list, search, read, page, rename, archive, delete, fork, switch
branch; the caller's own, and their projects' (each route names the role it needs there:
``read`` to read, ``write`` to change what the conversation holds, ``admin`` to rename or delete
it; see :mod:`parley.store.projects`)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from parley.api.deps import CurrentCaller, ServicesDep
from parley.api.schemas import BranchSwitch, ConversationCreate, ConversationPatch, ForkRequest
from parley.api.views import conversation_out, message_out, pending_out, tool_call_out
from parley.engine.prepare import side_effect

router = APIRouter(prefix="/api/conversations", tags=["conversations"])

PAGE = 50


@router.post("", status_code=201)
async def create(body: ConversationCreate, caller: CurrentCaller, s: ServicesDep) -> dict[str, Any]:
    """A conversation of the caller's, or, with ``project_id``, of that project (``write``)."""
    fields = body.model_dump(exclude_none=True, exclude={"project_id"})
    if body.profile:
        s.engine.profile(body.profile)
    if body.model or body.provider:
        resolved = s.providers.resolve(body.model, body.provider)
        fields.update(model=resolved.model, provider=resolved.provider_name)
    if body.project_id is not None:
        convo = await s.store.create_in_project(caller, body.project_id, fields)
    else:
        convo = await s.store.create_conversation(caller.user_id, **fields)
    return conversation_out(convo)


@router.get("")
async def list_(
    caller: CurrentCaller,
    s: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[Literal["active", "archived", "all"], Query()] = "active",
    skip: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    project_id: Annotated[str | None, Query(max_length=40)] = None,
) -> dict[str, Any]:
    """Newest first: ``cursor`` pages by keyset, ``skip`` by offset (EditorChat's paging). The
    caller's own conversations, or with ``project_id`` that project's (for any member). With
    ``q``, each result's ``match`` is where its messages matched (null: only its title did)."""
    if project_id is not None:
        items, next_cursor = await s.store.list_project_conversations(
            caller, project_id, limit=limit, cursor=cursor, q=q, status=status, skip=skip
        )
    else:
        items, next_cursor = await s.store.list_conversations(
            caller.user_id, limit=limit, cursor=cursor, q=q, status=status, skip=skip
        )
    out = [conversation_out(c) for c in items]
    if q:
        matches = await s.store.search_matches(items, q)
        for item in out:
            item["match"] = matches.get(item["id"])
    return {"items": out, "next_cursor": next_cursor}


@router.get("/{conversation_id}")
async def get(
    conversation_id: str,
    caller: CurrentCaller,
    s: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = PAGE,
) -> dict[str, Any]:
    """The conversation with the newest ``limit`` messages of its active branch."""
    reach = await s.store.reach(caller, conversation_id)
    convo, user = reach.conversation, reach.owner
    page, has_more = await s.store.messages_before(
        user, conversation_id, before=None, limit=limit, convo=convo
    )
    siblings, pending, active = await asyncio.gather(
        s.store.sibling_counts(user, conversation_id, page),
        s.store.pending_in_conversation(user, conversation_id),
        s.store.active_run(user, conversation_id),
    )
    out = conversation_out(convo, reach.role)
    out["messages"] = [message_out(m, siblings.get(m.id)) for m in page]
    out["has_more"] = has_more
    out["pending"] = [pending_out(p) for p in pending]
    out["active_run_id"] = active.id if active else None
    return out


@router.get("/{conversation_id}/messages")
async def messages(
    conversation_id: str,
    caller: CurrentCaller,
    s: ServicesDep,
    before: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = PAGE,
) -> dict[str, Any]:
    """Older messages of the active branch, for lazy loading: oldest first."""
    reach = await s.store.reach(caller, conversation_id)
    user = reach.owner
    page, has_more = await s.store.messages_before(
        user, conversation_id, before=before, limit=limit, convo=reach.conversation
    )
    siblings = await s.store.sibling_counts(user, conversation_id, page)
    return {"items": [message_out(m, siblings.get(m.id)) for m in page], "has_more": has_more}


@router.patch("/{conversation_id}")
async def patch(
    conversation_id: str, body: ConversationPatch, caller: CurrentCaller, s: ServicesDep
) -> dict[str, Any]:
    """Rename, archive, or change the model or profile (``admin`` in a project)."""
    user = (await s.store.reach(caller, conversation_id, "admin")).owner
    fields = body.model_dump(exclude_unset=True)
    if fields.get("profile"):
        s.engine.profile(fields["profile"])
    if body.model or body.provider:
        resolved = s.providers.resolve(body.model, body.provider)
        fields.update(model=resolved.model, provider=resolved.provider_name)
    convo = await s.store.update_conversation(user, conversation_id, fields)
    return conversation_out(convo)


@router.delete("/{conversation_id}", status_code=204)
async def delete(conversation_id: str, caller: CurrentCaller, s: ServicesDep) -> Response:
    """``admin`` in a project."""
    user = (await s.store.reach(caller, conversation_id, "admin")).owner
    await s.store.delete_conversation(user, conversation_id)
    return Response(status_code=204)


@router.post("/{conversation_id}/fork", status_code=201)
async def fork(
    conversation_id: str, body: ForkRequest, caller: CurrentCaller, s: ServicesDep
) -> dict[str, Any]:
    """A new conversation with the history up to ``message_id``; names side effects left out.
    A project's conversation forks into the project (``write``)."""
    reach = await s.store.reach(caller, conversation_id, "write")
    source, user = reach.conversation, reach.owner
    branch = await s.store.branch(user, conversation_id, leaf_id=source.active_leaf_id)
    convo = await s.store.fork(user, conversation_id, body.message_id)
    ids = [m.id for m in branch]
    after = ids[ids.index(body.message_id) + 1 :] if body.message_id in ids else []
    effects = await s.store.side_effects_after(user, conversation_id, after)
    out = conversation_out(convo, reach.role)
    copied = await s.store.branch(user, convo.id, leaf_id=convo.active_leaf_id)
    out["messages"] = [message_out(m) for m in copied]
    out["side_effects"] = [side_effect(c) for c in effects]
    return out


@router.post("/{conversation_id}/branch")
async def switch_branch(
    conversation_id: str, body: BranchSwitch, caller: CurrentCaller, s: ServicesDep
) -> dict[str, Any]:
    """Make the branch through ``message_id`` the active one (``write``)."""
    user = (await s.store.reach(caller, conversation_id, "write")).owner
    await s.store.set_active_leaf(user, conversation_id, body.message_id)
    return await get(conversation_id, caller, s)


@router.get("/{conversation_id}/tool-calls")
async def tool_calls(conversation_id: str, caller: CurrentCaller, s: ServicesDep) -> dict[str, Any]:
    """The conversation's tool-call audit log."""
    user = (await s.store.reach(caller, conversation_id)).owner
    calls = await s.store.list_tool_calls(user, conversation_id)
    return {"items": [tool_call_out(c) for c in calls]}
