"""A turn's token budget: admission before anything is written, a reservation per step, the
cost charged as usage arrives, the rest released at the end. Nothing without a limiter.

A call the engine makes on its own after a reply (a summary, a title) is held to the same
budgets: reserved before it (over budget, it is not made), settled with its usage after."""

from __future__ import annotations

import math

from parley.chat.ids import new_id
from parley.chat.messages import Part
from parley.chat.usage import TokenUsage
from parley.config import Settings
from parley.engine.history import to_chat, user_message
from parley.engine.requests import PreparedTurn
from parley.limits import Limiter, Reservation, price_of
from parley.providers.base import ChatMessage
from parley.providers.registry import ResolvedModel
from parley.store.values import Message


class Budget:
    def __init__(self, settings: Settings, limiter: Limiter | None) -> None:
        self.settings = settings
        self.limiter = limiter

    async def admit(
        self,
        user_id: str,
        run_id: str,
        model: ResolvedModel,
        history: list[Message],
        user_parts: list[Part] | None,
        max_tokens: int | None,
    ) -> Reservation | None:
        """Rate limits and the first step's budget reservation, before anything is written."""
        if self.limiter is None or not self.limiter.active(user_id):
            return None
        limit = self.settings.tool_result_max_chars
        chat = to_chat(history, system=None, max_result_chars=limit)
        if user_parts:
            chat.append(user_message(user_parts))
        return await self.limiter.admit(user_id, run_id, model.ref, self.estimate(chat, max_tokens))

    def estimate(self, messages: list[ChatMessage], max_tokens: int | None) -> int:
        """Prompt tokens (about four characters each) plus what the reply may use."""
        chars = sum(len(m.content) if isinstance(m.content, str) else 0 for m in messages)
        chars += sum(len(c.arguments) for m in messages for c in m.tool_calls)
        return math.ceil(chars / 4) + (max_tokens or self.settings.reply_tokens_estimate)

    async def reserve_step(self, turn: PreparedTurn, messages: list[ChatMessage]) -> None:
        if self.limiter is None or turn.reservation is None:
            return
        estimate = self.estimate(messages, turn.max_tokens)
        await self.limiter.reserve(turn.reservation, turn.model.ref, estimate)

    async def charge(self, turn: PreparedTurn, usage: TokenUsage) -> None:
        cost = price_of(self.settings, turn.model.ref, usage.prompt_tokens, usage.completion_tokens)
        turn.cost += cost
        if self.limiter is not None and turn.reservation is not None:
            await self.limiter.settle(turn.reservation, usage.total_tokens, cost)

    async def release(self, turn: PreparedTurn) -> None:
        if self.limiter is not None and turn.reservation is not None:
            held, turn.reservation = turn.reservation, None
            await self.limiter.release(held)

    # calls the engine makes on its own (engine/summaries.py) ---------------------------------

    async def reserve_aside(
        self, user_id: str, model: ResolvedModel, messages: list[ChatMessage], max_tokens: int
    ) -> Reservation | None:
        """The user's budget for a background call; :class:`RateLimited` when it is used up."""
        if self.limiter is None or not self.limiter.active(user_id):
            return None
        held = Reservation(user_id, new_id("aside"))
        await self.limiter.reserve(held, model.ref, self.estimate(messages, max_tokens))
        return held

    async def settle_aside(
        self, held: Reservation | None, model: ResolvedModel, usage: TokenUsage
    ) -> float:
        """Charge a background call's usage (releasing the rest of its reservation); its cost."""
        cost = price_of(self.settings, model.ref, usage.prompt_tokens, usage.completion_tokens)
        if self.limiter is not None and held is not None:
            await self.limiter.settle(held, usage.total_tokens, cost)
        return cost
