"""Conversations: create, list, search, read, page, rename, archive, delete, fork, switch
branch."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from parley.api.deps import CurrentUser, ServicesDep
from parley.api.schemas import (
    BranchSwitch,
    ConversationCreate,
    ConversationPatch,
    ForkRequest,
    conversation_out,
    message_out,
    pending_out,
    tool_call_out,
)
from parley.engine.prepare import side_effect

router = APIRouter(prefix="/api/conversations", tags=["conversations"])

PAGE = 50


@router.post("", status_code=201)
async def create(body: ConversationCreate, user: CurrentUser, s: ServicesDep) -> dict[str, Any]:
    fields = body.model_dump(exclude_none=True)
    if body.profile:
        s.engine.profile(body.profile)
    if body.model or body.provider:
        resolved = s.providers.resolve(body.model, body.provider)
        fields.update(model=resolved.model, provider=resolved.provider_name)
    convo = await s.store.create_conversation(user, **fields)
    return conversation_out(convo)


@router.get("")
async def list_(
    user: CurrentUser,
    s: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[Literal["active", "archived", "all"], Query()] = "active",
    skip: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict[str, Any]:
    """Newest first: ``cursor`` pages by keyset, ``skip`` by offset (EditorChat's paging). With
    ``q``, each result's ``match`` is where its messages matched (null: only its title did)."""
    items, next_cursor = await s.store.list_conversations(
        user, limit=limit, cursor=cursor, q=q, status=status, skip=skip
    )
    out = [conversation_out(c) for c in items]
    if q:
        matches = await s.store.search_matches(user, [c.id for c in items], q)
        for item in out:
            item["match"] = matches.get(item["id"])
    return {"items": out, "next_cursor": next_cursor}


@router.get("/{conversation_id}")
async def get(
    conversation_id: str,
    user: CurrentUser,
    s: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = PAGE,
) -> dict[str, Any]:
    """The conversation with the newest ``limit`` messages of its active branch."""
    convo = await s.store.get_conversation(user, conversation_id)
    page, has_more = await s.store.messages_before(
        user, conversation_id, before=None, limit=limit, convo=convo
    )
    siblings, pending, active = await asyncio.gather(
        s.store.sibling_counts(user, conversation_id, page),
        s.store.pending_in_conversation(user, conversation_id),
        s.store.active_run(user, conversation_id),
    )
    out = conversation_out(convo)
    out["messages"] = [message_out(m, siblings.get(m.id)) for m in page]
    out["has_more"] = has_more
    out["pending"] = [pending_out(p) for p in pending]
    out["active_run_id"] = active.id if active else None
    return out


@router.get("/{conversation_id}/messages")
async def messages(
    conversation_id: str,
    user: CurrentUser,
    s: ServicesDep,
    before: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = PAGE,
) -> dict[str, Any]:
    """Older messages of the active branch, for lazy loading: oldest first."""
    page, has_more = await s.store.messages_before(
        user, conversation_id, before=before, limit=limit
    )
    siblings = await s.store.sibling_counts(user, conversation_id, page)
    return {"items": [message_out(m, siblings.get(m.id)) for m in page], "has_more": has_more}


@router.patch("/{conversation_id}")
async def patch(
    conversation_id: str, body: ConversationPatch, user: CurrentUser, s: ServicesDep
) -> dict[str, Any]:
    fields = body.model_dump(exclude_unset=True)
    if fields.get("profile"):
        s.engine.profile(fields["profile"])
    if body.model or body.provider:
        resolved = s.providers.resolve(body.model, body.provider)
        fields.update(model=resolved.model, provider=resolved.provider_name)
    convo = await s.store.update_conversation(user, conversation_id, fields)
    return conversation_out(convo)


@router.delete("/{conversation_id}", status_code=204)
async def delete(conversation_id: str, user: CurrentUser, s: ServicesDep) -> Response:
    await s.store.delete_conversation(user, conversation_id)
    return Response(status_code=204)


@router.post("/{conversation_id}/fork", status_code=201)
async def fork(
    conversation_id: str, body: ForkRequest, user: CurrentUser, s: ServicesDep
) -> dict[str, Any]:
    """A new conversation with the history up to ``message_id``; names side effects left out."""
    source = await s.store.get_conversation(user, conversation_id)
    branch = await s.store.branch(user, conversation_id, leaf_id=source.active_leaf_id)
    convo = await s.store.fork(user, conversation_id, body.message_id)
    ids = [m.id for m in branch]
    after = ids[ids.index(body.message_id) + 1 :] if body.message_id in ids else []
    effects = await s.store.side_effects_after(user, conversation_id, after)
    out = conversation_out(convo)
    copied = await s.store.branch(user, convo.id, leaf_id=convo.active_leaf_id)
    out["messages"] = [message_out(m) for m in copied]
    out["side_effects"] = [side_effect(c) for c in effects]
    return out


@router.post("/{conversation_id}/branch")
async def switch_branch(
    conversation_id: str, body: BranchSwitch, user: CurrentUser, s: ServicesDep
) -> dict[str, Any]:
    """Make the branch through ``message_id`` the active one."""
    await s.store.set_active_leaf(user, conversation_id, body.message_id)
    return await get(conversation_id, user, s)


@router.get("/{conversation_id}/tool-calls")
async def tool_calls(conversation_id: str, user: CurrentUser, s: ServicesDep) -> dict[str, Any]:
    calls = await s.store.list_tool_calls(user, conversation_id)
    return {"items": [tool_call_out(c) for c in calls]}
