"""What the model sees each turn: the system prompt, the summary, the newest messages that fit.

A turn reads only the newest messages of its branch (:meth:`ContextWindow.load`: pages of the
parent walk, from the leaf up, until the model's window is full or the summary's message is
reached), so its cost does not grow with the conversation. Each model request then takes, from
the newest back, the whole stored messages that fit ``context_window - output_reserve`` beside
the system prompt, the summary and the reply's own steps so far (:meth:`ContextWindow.fit`).
An assistant message goes in whole or not at all (a tool call never without its result); the
newest message always goes in, cut with a marker when it alone is too long. The choice depends
only on the branch, the model and the counts: forks and regenerations see their own branch.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from parley.config import Settings
from parley.engine.history import to_chat
from parley.engine.requests import PreparedTurn, TurnContext
from parley.engine.tokens import REPLY_PRIMING, Calibration, Counters, TokenCounter
from parley.errors import NotFound
from parley.providers.base import ChatMessage, ImagePart, TextPart
from parley.providers.registry import ResolvedModel
from parley.store import Store
from parley.store.values import Conversation, Message

FIRST_PAGE = 32  # messages read by a turn's first statement; each further page is twice as long
ANCESTRY_LIMIT = 4_096  # ids walked to tell whether the summary's message is on a branch
SUMMARY_HEADING = "Summary of the earlier conversation:"
CUT_MARKER = "\n[... cut to fit the model's context window: about {n} tokens left out]"


@dataclass
class Fitted:
    messages: list[ChatMessage]
    tokens: int
    oldest: Message | None
    left_out: int


@dataclass
class _Cache:
    """Token counts of stored messages, which do not change once complete."""

    size: int = 50_000
    counts: OrderedDict[tuple[str, datetime, str], int] = field(default_factory=OrderedDict)

    def get(
        self, message: Message, counter: TokenCounter, chat: Callable[[], list[ChatMessage]]
    ) -> int:
        """The message's count; ``chat`` (the message as the model sees it) is built only to
        count one that is not kept yet."""
        if not message.id or message.status != "complete":
            return counter.messages(chat())
        key = (message.id, message.updated_at, counter.name)
        found = self.counts.get(key)
        if found is None:
            found = self.counts[key] = counter.messages(chat())
            if len(self.counts) > self.size:
                self.counts.popitem(last=False)
        return found


class ContextWindow:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.counters = Counters()
        self.calibration = Calibration()
        self._cache = _Cache()

    def counter(self, model: ResolvedModel) -> TokenCounter:
        return self.counters.for_model(model.model, gguf=_gguf_path(model))

    def budget(self, model: ResolvedModel, max_tokens: int | None = None) -> int:
        """The prompt tokens a request to ``model`` may hold."""
        caps = model.capabilities
        reserve = max(caps.output_reserve, min(max_tokens or 0, caps.context_window // 2))
        return max(caps.context_window - reserve, 1)

    # reading -----------------------------------------------------------------------------

    async def load(
        self, user_id: str, convo: Conversation, leaf_id: str | None, model: ResolvedModel
    ) -> tuple[list[Message], TurnContext]:
        """The newest messages of the branch ending at ``leaf_id`` (oldest first), enough to
        fill the model's window, and the summary of the rest when it belongs to this branch."""
        context = TurnContext()
        if convo.summary and convo.summary_message_id is None:  # a summary a person wrote
            context.summary = convo.summary
        if leaf_id is None:
            return [], context
        covered: Message | None = None
        if convo.summary and convo.summary_message_id:
            covered = await self._summary_message(user_id, convo)
        budget = self.budget(model)
        counter = self.counter(model)
        floor = covered.depth if covered is not None else -1
        rows: list[Message] = []
        tokens, page = 0, FIRST_PAGE
        cursor: str | None = leaf_id
        while cursor is not None and tokens < budget:
            batch = await self.store.branch(
                user_id, convo.id, leaf_id=cursor, limit=page, floor=floor
            )
            rows[:0] = batch
            tokens += sum(self._count(m, counter) for m in batch)
            if len(batch) == page:
                cursor, page = batch[0].parent_id, page * 2
            elif covered is None:
                break  # the root
            else:  # the walk stopped at the summary's depth
                cursor = batch[0].parent_id if batch else cursor
                if cursor == covered.id:  # the summary's message: the summary is this branch's
                    break
                covered, floor = None, -1  # another branch's summary: read on to the root
        if covered is not None and rows and rows[0].parent_id != covered.id:
            found = await self.store.ancestor_at(
                user_id, convo.id, rows[0].id, covered.depth, limit=ANCESTRY_LIMIT
            )
            covered = covered if found == covered.id else None
        if covered is not None:
            context.summary = convo.summary
            context.summary_message_id = covered.id
            context.summary_depth = covered.depth
        return rows, context

    async def _summary_message(self, user_id: str, convo: Conversation) -> Message | None:
        try:
            summarized = convo.summary_message_id or ""
            return await self.store.get_message(user_id, convo.id, summarized, on_loop=True)
        except NotFound:
            return None

    def _count(
        self, message: Message, counter: TokenCounter, chat: list[ChatMessage] | None = None
    ) -> int:
        if chat is not None:
            return self._cache.get(message, counter, lambda: chat)
        return self._cache.get(message, counter, lambda: self._chat([message]))

    def _chat(self, messages: Sequence[Message]) -> list[ChatMessage]:
        return to_chat(messages, system=None, max_result_chars=self.settings.tool_result_max_chars)

    # choosing ----------------------------------------------------------------------------

    def fit(self, turn: PreparedTurn, steps: list[ChatMessage]) -> list[ChatMessage]:
        """The messages of the turn's next model request (``steps``: the reply's so far)."""
        counter = self.counter(turn.model)
        factor = 1.0 if counter.exact else self.calibration.factor(turn.model.ref)
        budget = int(self.budget(turn.model, turn.max_tokens) / factor)
        context = turn.context
        fitted = self.choose(
            turn.history,
            steps,
            system=turn.system,
            summary=context.summary,
            summary_depth=context.summary_depth,
            budget=budget,
            counter=counter,
        )
        context.sent_tokens = fitted.tokens
        context.oldest_sent = fitted.oldest
        context.left_out = fitted.left_out
        return fitted.messages

    def choose(
        self,
        history: Sequence[Message],
        steps: list[ChatMessage],
        *,
        system: str | None,
        summary: str | None,
        summary_depth: int,
        budget: int,
        counter: TokenCounter,
    ) -> Fitted:
        head = system_message(system, summary)
        used = REPLY_PRIMING + counter.messages(head) + counter.messages(steps)
        kept: list[list[ChatMessage]] = []
        costs: list[int] = []
        oldest: Message | None = None
        for index, message in enumerate(reversed(history)):
            chat = self._chat([message])
            cost = self._count(message, counter, chat)
            if used + cost > budget:
                if index > 0:
                    break
                chat = cut(chat, budget - used, counter)  # the newest goes in, cut
                cost = counter.messages(chat)
            kept.append(chat)
            costs.append(cost)
            used += cost
            oldest = message
        while len(kept) > 1 and oldest is not None and oldest.role != "user":
            # the window starts with the person's words (Anthropic refuses a conversation
            # that opens with the assistant); what is dropped is left out, as what did not fit
            kept.pop()
            used -= costs.pop()
            oldest = history[len(history) - len(kept)]
        if oldest is None and history:
            oldest = history[-1]
        if used > budget and steps:  # the reply's own tool results outgrew the window
            steps = cut(steps, budget - (used - counter.messages(steps)), counter)
            used = REPLY_PRIMING + counter.messages(head) + counter.messages(steps)
            used += sum(counter.messages(c) for c in kept)
        messages = [*head]
        for chat in reversed(kept):
            messages.extend(chat)
        messages.extend(steps)
        left_out = oldest.depth - summary_depth - 1 if oldest is not None else 0
        return Fitted(messages=messages, tokens=used, oldest=oldest, left_out=max(left_out, 0))

    def calibrate(self, turn: PreparedTurn, reported: int) -> None:
        """A provider's count of the last request's prompt tokens."""
        if not self.counter(turn.model).exact:
            self.calibration.report(turn.model.ref, turn.context.sent_tokens, reported)


def system_message(system: str | None, summary: str | None) -> list[ChatMessage]:
    """The system prompt (the profile's instructions) and the summary, as one system message."""
    text = "\n\n".join(
        part for part in (system, f"{SUMMARY_HEADING}\n{summary}" if summary else None) if part
    )
    return [ChatMessage(role="system", content=text)] if text else []


def cut(chat: list[ChatMessage], room: int, counter: TokenCounter) -> list[ChatMessage]:
    """``chat`` with its longest texts cut, each with a marker, until it fits ``room`` tokens
    (as near as the counter allows)."""
    out = list(chat)
    for _ in range(8):
        over = counter.messages(out) - room
        if over <= 0:
            break
        index = max(range(len(out)), key=lambda i: _text_length(out[i]))
        if _text_length(out[index]) == 0:
            break
        out[index] = _shortened(out[index], over, counter)
    return out


def _text_length(message: ChatMessage) -> int:
    if isinstance(message.content, str):
        return len(message.content)
    return sum(len(p.text) for p in message.content if isinstance(p, TextPart))


def _shortened(message: ChatMessage, over: int, counter: TokenCounter) -> ChatMessage:
    """The message with about ``over`` tokens (and the marker's) cut from its longest text."""
    if isinstance(message.content, str):
        return replace_content(message, _cut_text(message.content, over, counter))
    parts = list(message.content)
    texts = [i for i, p in enumerate(parts) if isinstance(p, TextPart)]
    longest = max(texts, key=lambda i: len(parts[i].text))  # type: ignore[union-attr]
    part = parts[longest]
    assert isinstance(part, TextPart)
    parts[longest] = TextPart(text=_cut_text(part.text, over, counter))
    return replace_content(message, parts)


def replace_content(message: ChatMessage, content: str | list[TextPart | ImagePart]) -> ChatMessage:
    return message.model_copy(update={"content": content})


def _cut_text(text: str, over: int, counter: TokenCounter) -> str:
    total = max(counter.count(text), 1)
    marker_tokens = counter.count(CUT_MARKER.format(n=total))
    drop = min(total, over + marker_tokens)
    keep = int(len(text) * (total - drop) / total * 0.95)
    return text[: max(keep, 0)] + CUT_MARKER.format(n=max(drop, 1))


def _gguf_path(model: ResolvedModel) -> str | None:
    """The local model's file, whose vocabulary counts its tokens."""
    from parley.providers.local import LocalProvider, default_model_path

    provider = model.provider
    if not isinstance(provider, LocalProvider):
        return None
    if provider.model_path:
        return provider.model_path
    try:
        return str(default_model_path())
    except Exception:
        return None
