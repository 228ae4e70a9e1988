"""Request and response bodies of the native API (DESIGN.md section 3)."""

from __future__ import annotations

import functools
import mimetypes
from typing import Annotated, Any, Literal

import structlog
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from parley.chat.files import file_part
from parley.chat.messages import FileUIPart
from parley.errors import ValidationFailed
from parley.store.values import (
    Role,
)

log = structlog.get_logger("parley.api")
_BOUNDED = ConfigDict(str_max_length=200_000)  # every string, metadata's included


class ClientBody(BaseModel):
    """A body a client sends. Known keys are validated strictly; a key parley does not know is
    ignored and logged at debug, as the clients of the products parley replaces send their own
    (EditorChat's ``enableStreaming``, ``orgId``): refusing them turned those clients away."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _note_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = _known_keys(cls)
            unknown = sorted(str(k)[:100] for k in data if k not in known)
            if unknown:
                log.debug("unknown_keys_ignored", body=cls.__name__, keys=unknown[:20])
        return data


@functools.cache
def _known_keys(body: type[BaseModel]) -> frozenset[str]:
    """A body's field names and their alias choices: the same for every request."""
    known = set(body.model_fields)
    for info in body.model_fields.values():
        if isinstance(info.validation_alias, AliasChoices):
            known.update(str(c) for c in info.validation_alias.choices)
    return frozenset(known)


class ConversationFields(ClientBody):
    model_config = _BOUNDED

    title: str | None = Field(default=None, max_length=500)
    model: str | None = Field(default=None, max_length=255)
    provider: str | None = Field(default=None, max_length=100)
    temperature: float | None = Field(default=None, ge=0, le=2)
    system: str | None = Field(default=None, max_length=100_000)
    profile: str | None = Field(default=None, max_length=100)
    metadata: dict[str, Any] | None = None


class ConversationCreate(ConversationFields):
    project_id: str | None = Field(default=None, min_length=1, max_length=40)


class ConversationPatch(ConversationFields):
    status: Literal["active", "archived"] = "active"  # "archived" archives, "active" restores


class ProjectCreate(ClientBody):
    """A project: its name, and what every turn of its conversations gets (``instructions``
    before the conversation's own system prompt; ``default_profile`` when it names none)."""

    model_config = _BOUNDED

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    instructions: str | None = Field(default=None, max_length=100_000)
    default_profile: str | None = Field(default=None, max_length=100)


class ProjectPatch(ClientBody):
    model_config = _BOUNDED

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    instructions: str | None = Field(default=None, max_length=100_000)
    default_profile: str | None = Field(default=None, max_length=100)


class MemberRole(ClientBody):
    role: Role


class ForkRequest(ClientBody):
    model_config = _BOUNDED

    message_id: str = Field(max_length=40, validation_alias=AliasChoices("message_id", "messageId"))


class BranchSwitch(ClientBody):
    model_config = _BOUNDED

    message_id: str = Field(max_length=40)


class Attachment(ClientBody):
    """A file: ``{media_type, url | data, name?}``, or EditorChat's ``{name, type, content | url}``
    where ``type`` is a media type or a kind and ``content`` a data URL or base64; the media
    type is then taken from ``type``, the data URL, or the name."""

    type: str = Field(default="file", max_length=100)
    name: str | None = Field(default=None, max_length=255)
    media_type: str | None = Field(
        default=None, max_length=100, validation_alias=AliasChoices("media_type", "mediaType")
    )
    url: str | None = Field(default=None, max_length=10_000_000)
    data: str | None = Field(default=None, max_length=10_000_000)
    content: str | None = Field(default=None, max_length=10_000_000)

    def to_part(self, field: str) -> FileUIPart:
        """The stored file part (:func:`parley.chat.files.file_part`); ``field`` names this
        attachment in the 400 when its URL or data cannot be read."""
        url, data = self.url, self.data
        if self.content is not None and url is None and data is None:
            url, data = (self.content, None) if _is_data_url(self.content) else (None, self.content)
        return file_part(
            url=url, data=data, media_type=self._media_type(url), filename=self.name, field=field
        )

    def _media_type(self, url: str | None) -> str:
        if self.media_type:
            return self.media_type
        if "/" in self.type:
            return self.type
        if url is not None and _is_data_url(url):
            named = url[5:].split(",", 1)[0].split(";", 1)[0].strip()
            if named:
                return named
        guessed = mimetypes.guess_type(self.name or "")[0]
        return guessed or ("text/plain" if self.type == "text" else "application/octet-stream")


def _is_data_url(value: str) -> bool:
    return value[:5].lower() == "data:"


class ChatBody(ClientBody):
    """How a chat door answers: ``stream`` (or, when it is not sent, EditorChat's
    ``enableStreaming``) false gives one JSON reply. A body with ``enableStreaming`` is
    EditorChat's client, which no parley client sends: it reads unnamed SSE events."""

    stream: bool | None = None
    enable_streaming: bool | None = Field(
        default=None, validation_alias=AliasChoices("enableStreaming", "enable_streaming")
    )

    @property
    def streaming(self) -> bool | None:
        return self.enable_streaming if self.stream is None else self.stream

    @property
    def unnamed_events(self) -> bool:
        return "enable_streaming" in self.model_fields_set


class SendMessage(ChatBody):
    content: str = ""
    attachments: list[Attachment] = Field(default_factory=list, max_length=1_000)
    parent_id: str | None = Field(default=None, max_length=40)
    model: str | None = Field(default=None, max_length=255)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    profile: str | None = Field(default=None, max_length=100)


class EditMessage(SendMessage):
    pass


class Regenerate(ChatBody):
    model: str | None = Field(default=None, max_length=255)
    temperature: float | None = Field(default=None, ge=0, le=2)


class ApprovalAnswer(ClientBody):
    model_config = _BOUNDED

    approved: bool
    reason: str | None = Field(default=None, max_length=2_000)
    remember: Literal["tool", "server"] | None = None


class ElicitationAnswer(ClientBody):
    model_config = _BOUNDED

    action: Literal["accept", "decline", "cancel"]
    content: dict[str, Any] | None = None


# a UIMessage's parts, as a client sends them -------------------------------------------------


class ClientText(BaseModel):
    type: Literal["text"]
    text: str


class ClientFile(BaseModel):
    """A file part; :meth:`to_part` checks its URL and media type as every door does."""

    type: Literal["file"]
    url: str
    mediaType: str | None = None
    filename: str | None = None

    def to_part(self, field: str) -> FileUIPart:
        media_type = self.mediaType or "application/octet-stream"
        return file_part(url=self.url, media_type=media_type, filename=self.filename, field=field)


class ClientApproval(BaseModel):
    id: str = Field(default="", max_length=64)
    approved: bool = False
    reason: str | None = Field(default=None, max_length=2_000)


class ClientApprovalAnswer(BaseModel):
    """A v6 tool part (``dynamic-tool`` or ``tool-<name>``) whose approval the client answered."""

    type: str
    state: Literal["approval-responded"]
    toolCallId: str | None = Field(default=None, max_length=255)
    approval: ClientApproval


def _client_kind(part: Any) -> str | None:
    if not isinstance(part, dict):
        return None
    kind = part.get("type")
    if kind in ("text", "file"):
        return str(kind)
    if part.get("state") == "approval-responded" and isinstance(part.get("approval"), dict):
        return "answer"
    return None


ClientPart = Annotated[
    Annotated[ClientText, Tag("text")]
    | Annotated[ClientFile, Tag("file")]
    | Annotated[ClientApprovalAnswer, Tag("answer")],
    Discriminator(_client_kind),
]
_client_part: TypeAdapter[ClientPart] = TypeAdapter(ClientPart)


def client_parts(parts: list[dict[str, Any]], field: str) -> list[tuple[str, ClientPart]]:
    """The parts of a client's message that parley reads (text, files, approval answers), each
    with where it is in the body (``field[j]``); the client's other parts are left alone. A
    part that does not fit its type is a :class:`ValidationFailed` naming its field."""
    read: list[tuple[str, ClientPart]] = []
    for j, part in enumerate(parts):
        if _client_kind(part) is None:
            continue
        where = f"{field}[{j}]"
        try:
            read.append((where, _client_part.validate_python(part)))
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            name = ".".join([where, *(str(p) for p in error["loc"][1:])])
            raise ValidationFailed(f"{name}: {error['msg']}", field=name) from None
    return read


class SigninLinkCode(ClientBody):
    model_config = _BOUNDED

    code: str = Field(min_length=1, max_length=128)


class PasswordSignIn(ClientBody):
    """A local account's name and password (``parley user add NAME``)."""

    model_config = _BOUNDED

    user: str = Field(min_length=1, max_length=255)
    password: str = Field(min_length=1, max_length=1024)


class SessionInfo(BaseModel):
    """Who the page is signed in as, and how: ``session`` (the cookie), ``token`` (a bearer
    token) or ``none`` (``PARLEY_AUTH=none``: the one local user)."""

    user: str
    via: Literal["session", "token", "none"]
    expires_in: int | None = None


class RunTicketIssued(BaseModel):
    """A read-only ticket for one run's events: ``GET /api/runs/{run_id}/events?ticket=``."""

    ticket: str
    expires_in: int


class SignedIn(BaseModel):
    """A bearer token for the user a sign-in link was printed for."""

    token: str
    user: str
    expires_in: int


HeaderName = Annotated[
    str, StringConstraints(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", max_length=100)
]
HeaderValue = Annotated[str, StringConstraints(pattern=r"^[\x20-\x7e\t]+$", max_length=8192)]
# headers the MCP transport sets itself: a credential may not replace them
TRANSPORT_HEADERS = frozenset(
    {
        "accept",
        "connection",
        "content-length",
        "content-type",
        "host",
        "keep-alive",
        "last-event-id",
        "mcp-protocol-version",
        "mcp-session-id",
        "te",
        "transfer-encoding",
        "upgrade",
    }
)


class McpCredentialBody(ClientBody):
    """A user's own credential for a per-user MCP server: a bearer token, or HTTP headers."""

    bearer: str | None = Field(
        default=None, pattern=r"^[\x21-\x7e]+$", max_length=8192, description="a bearer token"
    )
    headers: dict[HeaderName, HeaderValue] | None = Field(
        default=None, min_length=1, max_length=20, description="headers sent on every request"
    )

    @model_validator(mode="after")
    def _one_of(self) -> McpCredentialBody:
        if (self.bearer is None) == (self.headers is None):
            raise ValueError('give either "bearer" or "headers"')
        taken = sorted(n for n in self.headers or {} if n.lower() in TRANSPORT_HEADERS)
        if taken:
            raise ValueError(f"the MCP transport sets {', '.join(taken)} itself")
        return self


class McpServerOut(BaseModel):
    """A configured MCP server as a user sees it: never a credential."""

    name: str
    credentials: Literal["shared", "per_user", "oauth"]
    connected: bool = Field(
        description="per_user, oauth: whether the caller has stored a credential or authorized"
    )
    tools: int = Field(description="how many tools of the server parley offers")
    connect: str | None = Field(
        default=None, description="per_user, oauth: the route that connects it"
    )


class McpOAuthStartOut(BaseModel):
    """Where to send the caller's browser to authorize parley with an OAuth MCP server."""

    authorization_url: str = Field(description="the authorization server's page, to open")
    expires_in: int = Field(description="seconds within which the authorization must finish")
