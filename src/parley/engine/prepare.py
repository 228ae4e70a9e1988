"""Preparing a turn: the caller's reach checked (``write`` in the conversation), the request
checked, its model, branch point, history and tools chosen, the budget admitted, then the user
message, the streaming reply and the run committed in one transaction before any model is
called. A project's instructions and default profile apply to its conversations' turns. A
suspended run's turn is rebuilt from its state."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from parley.chat.ids import new_id
from parley.chat.messages import Part
from parley.config import ProfileConfig, Settings
from parley.engine.budget import Budget
from parley.engine.context import ContextWindow
from parley.engine.message_limits import MessageLimits
from parley.engine.profiles import find_profile
from parley.engine.requests import PreparedTurn, TurnRequest
from parley.engine.summaries import title_from
from parley.engine.tools import ToolRunner
from parley.engine.toolset import ToolSet
from parley.errors import ApiKeyMissing, ValidationFailed
from parley.providers.registry import ProviderRegistry, ResolvedModel
from parley.store import Store
from parley.store.values import Caller, Conversation, Message, Reach, Run, RunState, ToolCall


class TurnPreparer:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        providers: ProviderRegistry,
        tools: ToolRunner,
        budget: Budget,
        context: ContextWindow,
    ) -> None:
        self.settings = settings
        self.store = store
        self.providers = providers
        self.tools = tools
        self.budget = budget
        self.context = context
        self.message_limits = MessageLimits.of(settings)

    def check(self, request: TurnRequest, *, earlier: Iterable[list[Part]] = ()) -> None:
        """Hold the request's new user message, and ``earlier`` user messages a client sends
        with it, to the limits every door shares; nothing is read or written."""
        for parts in earlier:
            self.message_limits.check(parts)
        if request.mode in ("send", "edit"):
            self.message_limits.check(_user_parts(request))

    async def prepare(
        self, caller: Caller, conversation_id: str, request: TurnRequest, *, owner: str | None
    ) -> PreparedTurn:
        self.check(request)
        reach = await self.store.reach(caller, conversation_id, "write")
        convo, user_id, actor = reach.conversation, reach.owner, caller.user_id
        profile = find_profile(
            self.settings, request.profile or convo.profile or reach.default_profile
        )
        model = self._model(request, convo.model, convo.provider, profile)
        if model.provider.missing_key:
            raise ApiKeyMissing(model.provider.missing_key)
        if request.parts and not model.capabilities.vision and _has_images(request.parts):
            raise ValidationFailed(f"the model {model.ref} cannot take image attachments")
        parent_id, user_parts, side_ids = await self._branch_point(user_id, convo, request)
        history, context = await self.context.load(user_id, convo, parent_id, model)
        side_effects = await self._side_effects(user_id, conversation_id, side_ids)
        if model.capabilities.tools:
            await self.tools.registry.list_for(actor)
        run_id = new_id("run")
        title = title_from(user_parts) if user_parts else None
        reservation = await self.budget.admit(
            actor, run_id, model, history, user_parts, request.max_tokens
        )
        try:
            user_message, assistant = await self.store.begin_turn(
                user_id,
                conversation_id,
                user_parts=user_parts,
                parent_id=parent_id,
                model=model.ref,
                run_id=run_id,
                title=title,
                owner=owner,
                parent_depth=_depth_of(history, parent_id),
            )
        except BaseException:
            if reservation is not None and self.budget.limiter is not None:
                await self.budget.limiter.release(reservation)
            raise
        if user_message is not None:
            history.append(user_message)
        return PreparedTurn(
            run_id=run_id,
            user_id=user_id,
            conversation_id=conversation_id,
            user_message_id=user_message.id if user_message else None,
            message_id=assistant.id,
            model=model,
            reservation=reservation,
            temperature=request.temperature
            if request.temperature is not None
            else convo.temperature,
            max_tokens=request.max_tokens,
            system=_system(reach, profile),
            history=history,
            tools=self._tools(model, profile, request, actor),
            max_steps=profile.max_steps if profile else self.settings.max_steps,
            side_effects=side_effects,
            context=context,
            actor=actor if actor != user_id else None,
        )

    async def reopen(self, user_id: str, run: Run) -> PreparedTurn:
        """The turn of a suspended run, from its stored state, its reply marked streaming again."""
        state = run.state or RunState()
        message = await self.store.get_message(user_id, run.conversation_id, run.message_id)
        convo = await self.store.get_conversation(user_id, run.conversation_id)
        model = self.providers.resolve(state.model)
        history, context = await self.context.load(user_id, convo, message.parent_id, model)
        await self.store.begin_turn_continue(user_id, run.conversation_id, message.id)
        return PreparedTurn(
            run_id=run.id,
            user_id=user_id,
            conversation_id=run.conversation_id,
            user_message_id=run.user_message_id,
            message_id=run.message_id,
            model=model,
            temperature=state.temperature,
            max_tokens=state.max_tokens,
            system=state.system,
            history=history,
            tools=self.tools.toolset_from_state(state.tools),
            max_steps=state.max_steps if state.max_steps is not None else self.settings.max_steps,
            parts=list(message.parts),
            step=state.step,
            context=context,
            actor=state.actor,
        )

    def _tools(
        self,
        model: ResolvedModel,
        profile: ProfileConfig | None,
        request: TurnRequest,
        user_id: str,
    ) -> ToolSet:
        """The run's tools: none for a model that cannot call tools (it would answer in calls)."""
        if not model.capabilities.tools:
            return ToolSet()
        external = request.external_tools or ()
        return self.tools.toolset(profile, request.servers, request.approve_all, user_id, external)

    def _model(
        self,
        request: TurnRequest,
        convo_model: str | None,
        convo_provider: str | None,
        profile: ProfileConfig | None,
    ) -> ResolvedModel:
        if request.model or request.provider:
            return self.providers.resolve(request.model, request.provider)
        if convo_model or convo_provider:
            return self.providers.resolve(convo_model, convo_provider)
        return self.providers.resolve(profile.model if profile else None)

    async def _branch_point(
        self, user_id: str, convo: Conversation, request: TurnRequest
    ) -> tuple[str | None, list[Part] | None, list[str]]:
        """Where the new messages attach, the user message parts, and the messages replaced."""
        if request.mode == "continue":
            return convo.active_leaf_id, None, []
        if request.mode == "send":
            parts = _user_parts(request)
            parent = request.parent_id or convo.active_leaf_id
            if request.parent_id:
                await self.store.get_message(user_id, convo.id, request.parent_id)
            return parent, parts, []
        if request.target_id is None:
            raise ValidationFailed("a message id is required")
        target = await self.store.get_message(user_id, convo.id, request.target_id)
        replaced = await self._tail_from(user_id, convo, target)
        if request.mode == "regenerate":
            if target.role != "assistant":
                raise ValidationFailed("only an assistant message can be regenerated")
            return target.parent_id, None, replaced
        if target.role != "user":
            raise ValidationFailed("only a user message can be edited")
        return target.parent_id, _user_parts(request), replaced

    async def _tail_from(self, user_id: str, convo: Conversation, target: Message) -> list[str]:
        """Ids of the active branch from ``target`` down to the leaf (``target`` alone when it
        is on another branch): the ids of the leaf's walk up to the target's depth, no more."""
        if convo.active_leaf_id is None:
            return [target.id]
        ids = await self.store.tail_ids(user_id, convo.id, convo.active_leaf_id, target.depth)
        return ids if ids[:1] == [target.id] else [target.id]

    async def _side_effects(
        self, user_id: str, conversation_id: str, message_ids: list[str]
    ) -> list[dict[str, Any]]:
        calls = await self.store.side_effects_after(user_id, conversation_id, message_ids)
        return [side_effect(c) for c in calls]


def side_effect(call: ToolCall) -> dict[str, Any]:
    """A tool call that changed something, as a client is told of it (a replaced reply's)."""
    return {
        "tool_call_id": call.tool_call_id,
        "tool_name": call.tool_name,
        "server": call.server,
        "arguments": call.arguments,
        "message_id": call.message_id,
        "at": call.finished_at.isoformat() if call.finished_at else None,
    }


def _system(reach: Reach, profile: ProfileConfig | None) -> str | None:
    """The conversation's system prompt (or its profile's), after its project's instructions."""
    own = reach.conversation.system or (profile.system_prompt if profile else None)
    said = [text for text in (reach.instructions, own) if text]
    return "\n\n".join(said) or None


def _user_parts(request: TurnRequest) -> list[Part]:
    parts: list[Part] = []
    if request.content:
        parts.append({"type": "text", "text": request.content})
    parts.extend(request.parts)
    if not parts:
        raise ValidationFailed("the message is empty")
    return parts


def _depth_of(history: list[Message], message_id: str | None) -> int | None:
    """The depth of the last message of ``history`` when it is ``message_id``."""
    return history[-1].depth if history and history[-1].id == message_id else None


def _has_images(parts: list[Part]) -> bool:
    return any(str(p.get("mediaType", "")).startswith("image/") for p in parts)
