"""Which stored message a Vercel client means, read from the leaf: never the whole branch.

ai@4 and v5+ clients re-send their whole chat and name a re-sent or edited message by its place
in it, counted from the root. Their assistant messages carry parley's ids (the stream gave
them), so the place is counted from the newest reply the client sent, the *anchor*, when it is on
the active branch: the branch is read from the leaf down to the anchor only (ids and roles,
:meth:`~parley.store.messages.MessageStore.tail_roles`), as a regeneration or an edit there
reads anyway. Where the client's chat matches the branch, counting from the anchor and from the
root agree. A client that kept none of parley's ids is counted from the root, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from parley.api.deps import Services
from parley.errors import NotFound, ValidationFailed
from parley.store.values import Conversation, Message

FIRST_PAGE = 1  # messages read at first when looking for the newest reply; then twice as many


class Sent(Protocol):
    """A message as the client sent it: all that matching needs."""

    @property
    def id(self) -> str: ...

    @property
    def role(self) -> str: ...


async def active_leaf(user: str, s: Services, convo: Conversation) -> str | None:
    """The active leaf as stored now (a run may have moved it since the request began)."""
    return (await s.store.get_conversation(user, convo.id)).active_leaf_id


async def leaf_message(user: str, s: Services, convo: Conversation) -> Message | None:
    leaf = await active_leaf(user, s, convo)
    return None if leaf is None else await _stored(user, s, convo, leaf)


async def last_assistant(user: str, s: Services, convo: Conversation) -> str:
    """The newest reply of the active branch, read in pages from the leaf up."""
    cursor, page = await active_leaf(user, s, convo), FIRST_PAGE
    while cursor is not None:
        rows = await s.store.branch(user, convo.id, leaf_id=cursor, limit=page)
        found = next((m for m in reversed(rows) if m.role == "assistant"), None)
        if found is not None:
            return found.id
        cursor = rows[0].parent_id if len(rows) == page else None
        page *= 2
    raise ValidationFailed("there is no reply to regenerate in this chat")


async def on_branch(
    user: str, s: Services, convo: Conversation, leaf: str | None, message_id: str
) -> bool:
    """Whether ``message_id`` is a question or reply of the branch ending at ``leaf``."""
    found = await _stored(user, s, convo, message_id)
    if found is None or found.role not in ("user", "assistant"):
        return False
    return await _below(user, s, convo, leaf, found) is not None


async def after_anchor(
    user: str, s: Services, convo: Conversation, leaf: str | None, sent: Sequence[Sent]
) -> tuple[int, list[tuple[str, str]]]:
    """Where the client's messages ``sent`` meet the branch ending at ``leaf``: how many of them
    the match covers, and the ids and roles of the branch's messages after it, oldest first."""
    anchor = next((i for i in reversed(range(len(sent))) if sent[i].role == "assistant"), None)
    if anchor is not None and sent[anchor].id:
        found = await _stored(user, s, convo, sent[anchor].id)
        after = None if found is None else await _below(user, s, convo, leaf, found)
        if after is not None:
            return anchor + 1, after
    return 0, ([] if leaf is None else await s.store.tail_roles(user, convo.id, leaf, 0))


async def text_of(user: str, s: Services, convo: Conversation, message_id: str) -> str:
    return (await s.store.get_message(user, convo.id, message_id)).text


async def _stored(user: str, s: Services, convo: Conversation, message_id: str) -> Message | None:
    try:
        return await s.store.get_message(user, convo.id, message_id)
    except NotFound:
        return None


async def _below(
    user: str, s: Services, convo: Conversation, leaf: str | None, message: Message
) -> list[tuple[str, str]] | None:
    """The ids and roles of the branch ending at ``leaf`` below ``message``, or None when
    ``message`` is not on that branch."""
    if leaf is None:
        return None
    tail = await s.store.tail_roles(user, convo.id, leaf, message.depth)
    return tail[1:] if tail[:1] == [(message.id, message.role)] else None
