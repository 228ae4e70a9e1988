"""After a reply, in the background: fold what the window left out into the summary, and name
a new conversation.

Neither delays a turn: :meth:`Summaries.after_reply` only starts tasks. A summary is folded when
``summary_after`` or more messages of the branch are neither in the model's window nor in the
summary; it records the newest message it covers (``conversations.summary_message_id``), and is
written only if no other summary landed meanwhile. A title is asked for after the first reply,
and replaces the one the first message gave unless a person renamed the conversation. Both use
``summary_model`` when set, else the conversation's model; a failure is logged, never raised.
Each call is the user's: held to their budget before it (over it, the call is not made) and
its usage charged to that budget and added to the conversation's, as a turn's is.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine, Sequence
from typing import Any

import structlog

from parley.chat.messages import Part
from parley.chat.usage import TokenUsage
from parley.config import Settings
from parley.engine.budget import Budget
from parley.engine.context import ContextWindow, cut
from parley.engine.requests import PreparedTurn
from parley.engine.tokens import TokenCounter
from parley.limits import Reservation
from parley.providers.base import ChatMessage, ProviderRequest, TextChunk, UsageChunk
from parley.providers.registry import ProviderRegistry, ResolvedModel
from parley.store import Store
from parley.store.values import Message

log = structlog.get_logger("parley.engine")

SUMMARY_PROMPT = (
    "You keep the running summary of a conversation, for an assistant that will see only the "
    "summary and the latest messages. Merge the new messages into the summary: keep names, "
    "facts, figures, decisions, open questions and what the user prefers; drop small talk. "
    "Write plain prose of at most {words} words. Answer with the summary only."
)
TITLE_PROMPT = (
    "Name this conversation in at most six words. Answer with the title only: no quotes, no "
    "punctuation at the end."
)
PROMPT_ROOM = 400  # tokens of a summary request besides the summary and the new messages
TITLE_CHARS = 80
TITLE_WORDS = 8  # a longer proposal is a sentence, not a title (small models answer instead)


def title_from(parts: Sequence[Part]) -> str | None:
    """The title the first message gives a conversation: its first eight words."""
    text = " ".join(p.get("text", "") for p in parts if p["type"] == "text").strip()
    if not text:
        return None
    words = text.split()
    title = " ".join(words[:8])
    return title[:80] + ("…" if len(words) > 8 or len(title) > 80 else "")


def clean_title(text: str) -> str | None:
    """A model's proposed title, as one short line; None when what it said is no title (a
    sentence or more: the first message's words then stay the title)."""
    line = next((ln for ln in text.strip().splitlines() if ln.strip()), "")
    line = re.sub(r"^\s*(title\s*:\s*)", "", line, flags=re.IGNORECASE)
    line = " ".join(line.strip().strip("\"'*#`“”").split()).rstrip(".")
    if len(line.split()) > TITLE_WORDS or len(line) > TITLE_CHARS:
        return None
    return line or None


class Summaries:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        providers: ProviderRegistry,
        context: ContextWindow,
        budget: Budget,
    ) -> None:
        self.settings = settings
        self.store = store
        self.providers = providers
        self.context = context
        self.budget = budget
        self._jobs: dict[tuple[str, str], asyncio.Task[None]] = {}

    def after_reply(self, turn: PreparedTurn, parts: list[Part]) -> None:
        """Start what a finished reply calls for; returns at once."""
        if self._titles(turn) and _first_reply(turn.history):
            self._start("title", turn, self._title(turn, parts))
        window = turn.context
        due = self.settings.summary_after and window.left_out >= self.settings.summary_after
        if due and window.oldest_sent is not None:
            self._start("summary", turn, self._summarize(turn, window.oldest_sent))

    async def idle(self) -> None:
        """Wait until every job started so far has ended (tests, shutdown)."""
        while self._jobs:
            await asyncio.gather(*self._jobs.values(), return_exceptions=True)

    async def aclose(self) -> None:
        for job in list(self._jobs.values()):
            job.cancel()
        await self.idle()

    def _start(self, kind: str, turn: PreparedTurn, work: Coroutine[Any, Any, None]) -> None:
        key = (kind, turn.conversation_id)
        if key in self._jobs:  # one at a time per conversation; the next reply asks again
            work.close()
            return
        task = asyncio.create_task(self._guarded(kind, turn, work), name=f"{kind} {key[1]}")
        self._jobs[key] = task
        task.add_done_callback(lambda _: self._jobs.pop(key, None))

    async def _guarded(
        self, kind: str, turn: PreparedTurn, work: Coroutine[Any, Any, None]
    ) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                f"{kind}_failed", conversation_id=turn.conversation_id, error=str(exc)[:300]
            )

    def _titles(self, turn: PreparedTurn) -> bool:
        """Whether to ask for a title: on, and the model that would write it can."""
        return self.settings.auto_titles and self._model(turn).capabilities.titles

    def _model(self, turn: PreparedTurn) -> ResolvedModel:
        if self.settings.summary_model:
            return self.providers.resolve(self.settings.summary_model)
        return turn.model

    async def _ask(
        self,
        turn: PreparedTurn,
        model: ResolvedModel,
        messages: list[ChatMessage],
        max_tokens: int,
    ) -> str:
        """The model's answer; what it used is charged to the turn's user and conversation."""
        held = await self.budget.reserve_aside(turn.user_id, model, messages, max_tokens)
        request = ProviderRequest(model=model.model, messages=messages, max_tokens=max_tokens)
        text: list[str] = []
        usage = TokenUsage()
        stream = model.provider.stream(request)
        try:
            async for chunk in stream:
                if isinstance(chunk, TextChunk):
                    text.append(chunk.text)
                elif isinstance(chunk, UsageChunk):
                    usage = usage + TokenUsage(
                        prompt_tokens=chunk.prompt_tokens,
                        completion_tokens=chunk.completion_tokens,
                    )
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
            await self._charge(turn, model, usage, held)
        return "".join(text).strip()

    async def _charge(
        self, turn: PreparedTurn, model: ResolvedModel, usage: TokenUsage, held: Reservation | None
    ) -> None:
        cost = await self.budget.settle_aside(held, model, usage)
        if usage.total_tokens or cost:
            await self.store.add_usage(turn.user_id, turn.conversation_id, usage, cost)

    # titles ------------------------------------------------------------------------------

    async def _title(self, turn: PreparedTurn, parts: list[Part]) -> None:
        first = turn.history[0]
        given = title_from(first.parts)
        convo = await self.store.get_conversation(turn.user_id, turn.conversation_id)
        if given is None or convo.title != given:  # named by a person, or by a model already
            return
        reply = " ".join(p.get("text", "") for p in parts if p["type"] == "text")
        messages = [
            ChatMessage(role="system", content=TITLE_PROMPT),
            ChatMessage(
                role="user", content=f"User: {first.text[:2000]}\n\nAssistant: {reply[:2000]}"
            ),
        ]
        title = clean_title(await self._ask(turn, self._model(turn), messages, max_tokens=24))
        if title and title != given:
            await self.store.replace_title(
                turn.user_id, turn.conversation_id, title, expected=given
            )

    # summaries ---------------------------------------------------------------------------

    async def _summarize(self, turn: PreparedTurn, oldest_sent: Message) -> None:
        """Fold the messages between the summary's and the oldest one the model saw."""
        user_id, conversation_id = turn.user_id, turn.conversation_id
        convo = await self.store.get_conversation(user_id, conversation_id)
        summary, covered = turn.context.summary, turn.context.summary_message_id
        if covered is not None and covered != convo.summary_message_id:
            return  # another summary landed since the turn read it
        gap = await self.store.branch(
            user_id,
            conversation_id,
            leaf_id=oldest_sent.parent_id,
            floor=turn.context.summary_depth if covered else -1,
        )
        model = self._model(turn)
        counter = self.context.counter(model)
        window = self.context.budget(model)
        out_tokens = max(64, min(512, window // 8))
        room = max(window - out_tokens - PROMPT_ROOM, 256)
        expected = convo.summary_message_id
        while gap:
            chunk, text = self._chunk(gap, room - counter.count(summary or ""), counter)
            system = SUMMARY_PROMPT.format(words=int(out_tokens * 0.6))
            ask = f"Summary so far:\n{summary or '(none yet)'}\n\nNew messages:\n{text}"
            messages = [
                ChatMessage(role="system", content=system),
                ChatMessage(role="user", content=ask),
            ]
            new = await self._ask(turn, model, messages, max_tokens=out_tokens)
            if not new:
                return
            through = chunk[-1].id
            if not await self.store.set_summary(
                user_id, conversation_id, new, through=through, expected=expected
            ):
                return
            log.info("summary_folded", conversation_id=conversation_id, messages=len(chunk))
            summary, expected, gap = new, through, gap[len(chunk) :]

    def _chunk(
        self, gap: list[Message], room: int, counter: TokenCounter
    ) -> tuple[list[Message], str]:
        """The oldest messages of ``gap`` whose transcript fits ``room`` tokens (at least one,
        cut to fit), and that transcript."""
        lines: list[str] = []
        used = 0
        for message in gap:
            line = _transcript_line(message)
            tokens = counter.count(line) + 2
            if used + tokens > room:
                if lines:
                    break
                chat = cut([ChatMessage(role="user", content=line)], room, counter)
                line = str(chat[0].content)
            lines.append(line)
            used += tokens
        return gap[: len(lines)], "\n\n".join(lines)


def _transcript_line(message: Message) -> str:
    who = {"user": "User", "assistant": "Assistant"}.get(message.role, message.role.title())
    tools = [p.get("toolName") for p in message.parts if p.get("type") == "dynamic-tool"]
    called = f" [called: {', '.join(str(t) for t in tools)}]" if tools else ""
    return f"{who}: {message.text}{called}"


def _first_reply(history: Sequence[Message]) -> bool:
    """Whether the turn answered the conversation's first message."""
    return len(history) == 1 and history[0].role == "user" and history[0].depth == 0
