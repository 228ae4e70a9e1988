"""The provider seam: ``stream(request) -> AsyncIterator[ProviderEvent]`` and ``aclose()``.

A provider turns one :class:`ProviderRequest` (a provider-neutral chat history plus tools) into a
stream of small events. It raises only :mod:`parley.errors` exceptions: foreign ones are
translated where they arise.

A provider that can tell when its request has left (``reports_sent``) calls the request's
``on_sent`` then: the engine lets the model have the loop until its request is on the wire, and
builds the client's response while the model thinks (``RunManager.start``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from pydantic import BaseModel, Field


class ImagePart(BaseModel):
    type: Literal["image"] = "image"
    media_type: str
    data: str | None = None  # base64
    url: str | None = None


class TextPart(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ToolCallRequest(BaseModel):
    id: str
    name: str
    arguments: str  # raw JSON text as the model produced it


class ChatMessage(BaseModel):
    """One message in the provider-neutral history."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[TextPart | ImagePart] = ""
    tool_calls: list[ToolCallRequest] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None


class ToolSpec(BaseModel):
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})


class ProviderRequest(BaseModel):
    model: str
    messages: list[ChatMessage]
    tools: list[ToolSpec] = Field(default_factory=list)
    temperature: float | None = None
    max_tokens: int | None = None
    # Called once the request is on the wire (only by a provider that ``reports_sent``).
    on_sent: Callable[[], None] | None = Field(default=None, exclude=True, repr=False)


class TextChunk(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ReasoningChunk(BaseModel):
    type: Literal["reasoning"] = "reasoning"
    text: str


class ToolCallChunk(BaseModel):
    """A fragment of a tool call: the first names it, later ones add argument text."""

    type: Literal["tool_call"] = "tool_call"
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class UsageChunk(BaseModel):
    type: Literal["usage"] = "usage"
    prompt_tokens: int
    completion_tokens: int


class FinishChunk(BaseModel):
    type: Literal["finish"] = "finish"
    reason: Literal["stop", "length", "tool_calls", "content_filter"] = "stop"


class QueueChunk(BaseModel):
    """The request waits for a shared resource (a local model busy with another run)."""

    type: Literal["queue"] = "queue"
    position: int


ProviderEvent = TextChunk | ReasoningChunk | ToolCallChunk | UsageChunk | FinishChunk | QueueChunk


class Provider(ABC):
    """A model API. Subclasses implement :meth:`stream`; :meth:`aclose` frees connections."""

    name: str = "provider"
    supports_images: bool = False
    reports_sent: bool = False  # calls ``request.on_sent`` once its request has left
    # what to set when the model API needs a key this provider was not given, else None
    missing_key: str | None = None

    @abstractmethod
    def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        """Stream the model's answer to ``request``. Closing the iterator stops the model."""

    async def models(self) -> list[str]:
        """The model names this provider offers, when it can tell."""
        raise NotImplementedError(f"{self.name} cannot list its models")

    async def aclose(self) -> None:
        """Release connections and loaded models."""
