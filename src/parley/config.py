"""Settings: the only place parley reads its environment.

Sources, highest priority first: keyword arguments (tests), ``PARLEY_*`` environment variables,
the standard ``OPENAI_*`` / ``ANTHROPIC_*`` variables, then ``parley.toml`` (path from
``PARLEY_CONFIG``, default ``./parley.toml``). Everything is read once, at start-up, and the
resulting :class:`Settings` object is passed down.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from parley.errors import ConfigError
from parley.masking import mask_url

DEFAULT_DATA_DIR = Path(".parley")
# an entry of PARLEY_IMAGE_HOSTS: a host (or *.domain), an optional scheme and port, no path
_IMAGE_HOST = re.compile(r"(https?://)?(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*(:(\d+|\*))?")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
MIN_SECRET_KEY = 32


class ProviderConfig(BaseModel):
    """One configured provider in ``[providers.NAME]``."""

    type: Literal["openai", "anthropic", "local", "scripted"] = "openai"
    base_url: str | None = None
    api_key: SecretStr | None = None
    models: list[str] = Field(default_factory=list)
    default_model: str | None = None
    timeout: float = 60.0
    max_retries: int = 2
    vision: bool = True
    script: str | None = None  # scripted: path of a JSON script


class ModelConfig(BaseModel):
    """What a model can do, in ``[models."provider/model"]`` (a name or an fnmatch pattern).

    Unset fields keep what parley knows of the model (``parley.providers.capabilities``).
    """

    tools: bool | None = None
    vision: bool | None = None
    context_window: int | None = Field(default=None, gt=0)
    output_reserve: int | None = Field(default=None, ge=0)
    titles: bool | None = None


class McpServerConfig(BaseModel):
    """One MCP server in ``[[mcp_servers]]``.

    ``credentials = "per_user"`` (an HTTP server only): each user connects it with their own
    credential (``PUT /api/mcp/servers/{name}/credentials``) and calls go through a session of
    their own; ``headers`` then serve only to list the server's tools. At most ``max_sessions``
    users' sessions stay open, each closed after ``session_idle`` seconds unused.

    ``credentials = "oauth"`` is the same, but each user connects through MCP's OAuth flow
    (``POST /api/mcp/servers/{name}/oauth/start``): parley registers itself with the server's
    authorization server, unless ``client_id`` (and ``client_secret`` for a confidential
    client) name a client registered beforehand.
    """

    name: str
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True
    require_approval: bool | list[str] = False
    timeout: float = 30.0
    credentials: Literal["shared", "per_user", "oauth"] = "shared"
    session_idle: float = Field(default=300.0, gt=0)
    max_sessions: int = Field(default=100, ge=1)
    client_id: str | None = Field(default=None, min_length=1)
    client_secret: SecretStr | None = None

    @property
    def per_user(self) -> bool:
        """Whether calls go through each user's own session (a stored credential or OAuth)."""
        return self.credentials in ("per_user", "oauth")

    @property
    def oauth(self) -> bool:
        return self.credentials == "oauth"

    @model_validator(mode="after")
    def _per_user_over_http(self) -> McpServerConfig:
        if self.per_user and self.url is None:
            raise ValueError(f"MCP server {self.name!r}: per-user credentials need a url server")
        if (self.client_id or self.client_secret) and not self.oauth:
            raise ValueError(f"MCP server {self.name!r}: client_id is for credentials = 'oauth'")
        if self.client_secret and not self.client_id:
            raise ValueError(f"MCP server {self.name!r}: client_secret needs a client_id")
        return self


class ProfileConfig(BaseModel):
    """An agent archetype in ``[profiles.NAME]``."""

    system_prompt: str | None = None
    model: str | None = None
    tools: list[str] = Field(default_factory=lambda: ["*"])
    max_steps: int = 8
    reply_tokens_estimate: int = 1024
    delegate_to: list[str] = Field(default_factory=list)
    description: str | None = None


class LimitsConfig(BaseModel):
    """Per-user limits; ``[limits]`` globally and ``[limits.users.NAME]`` per user."""

    requests_per_minute: int | None = None
    concurrent_runs: int | None = None
    tokens_per_day: int | None = None
    cost_per_day: float | None = None


class Settings(BaseSettings):
    """Everything parley can be told. Build it directly in tests: ``Settings(data_dir=tmp)``.

    ``allowed_hosts`` (``PARLEY_ALLOWED_HOSTS``, a JSON list or comma-separated) are the names a
    request's ``Host`` header may carry, with any port; any other is a 400 on every route, so a
    web page cannot reach parley through DNS rebinding. ``localhost``, ``127.0.0.1`` and
    ``[::1]`` are always allowed; ``*.example.com`` allows the subdomains, ``*`` any name. Unset,
    a server bound to a loopback address allows only those, and one bound to any other address
    (``0.0.0.0``, a name) allows any name. Behind a proxy that passes the public name
    (``proxy_set_header Host $host``), list that name.
    """

    model_config = SettingsConfigDict(
        env_prefix="PARLEY_",
        extra="ignore",
        populate_by_name=True,
        env_nested_delimiter="__",
    )

    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str | None = None
    jwt_secret: SecretStr | None = None
    # seals what users store (their MCP credentials): comma-separated keys, newest first
    secret_key: SecretStr | None = None
    # where users reach parley (https://chat.example.com): the base of the OAuth redirect URI
    public_url: str | None = None
    jwks_url: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    # the token claim that names the caller's organisation: projects made with one stay in it
    org_claim: str = Field(default="org_id", min_length=1, max_length=100)
    provider: str | None = None
    model: str | None = None
    redis_url: str | None = None
    config: Path = Path("parley.toml")

    host: str = "127.0.0.1"
    port: int = 8000
    allowed_hosts: Annotated[list[str] | None, NoDecode] = None
    # the user the sign-in link `parley serve` prints signs in (default: the OS user name)
    signin_user: str | None = None
    # "none": no token, every request is `auth_none_user` (on loopback unless auth_none_public)
    auth: Literal["jwt", "none"] = "jwt"
    auth_none_user: str = Field(default="local", min_length=1, max_length=255)
    auth_none_public: bool = False
    auto_migrate: bool = True

    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("openai_api_key", "OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("openai_base_url", "OPENAI_BASE_URL")
    )
    anthropic_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("anthropic_api_key", "ANTHROPIC_API_KEY")
    )
    anthropic_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("anthropic_base_url", "ANTHROPIC_BASE_URL")
    )
    local_model: str | None = None

    run_ttl: float = 600.0
    owner_ttl: float = 10.0
    # SIGTERM: how long running replies may go on (their streams open) before they are stopped
    # as interrupted (docs/deploy.md, "Graceful shutdown").
    shutdown_grace: float = Field(default=25.0, ge=0)
    run_timeout: float = 600.0
    checkpoint_interval: float = 1.0
    heartbeat_interval: float = 15.0
    # `parley serve`: the garbage collector's full collections at most this often, when no run
    # is in progress (or after ten times this under constant load); 0: Python's own schedule.
    # See parley.serving.FullCollections.
    full_collection_interval: float = 60.0
    max_steps: int = 8
    reply_tokens_estimate: int = 1024
    # Long conversations (README): the model that writes summaries and titles (``provider/model``;
    # unset: the conversation's own), how many messages left out of the context window are
    # folded into the summary at once (0: never), and whether the model names conversations.
    summary_model: str | None = None
    summary_after: int = Field(default=10, ge=0)
    auto_titles: bool = True
    approvals: Literal["none", "policy", "all"] = "policy"
    approval_timeout: float = 300.0
    tool_timeout: float = 60.0
    tool_result_max_chars: int = 20_000

    max_body_bytes: int = 2_000_000
    max_message_chars: int = 200_000
    max_attachments: int = 10
    max_attachment_bytes: int = 5_000_000
    log_content: bool = False
    log_json: bool = False
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_token: SecretStr | None = None
    # PARLEY_CORS_ORIGINS: a JSON list or comma-separated origins (http://localhost:3000,...)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    security_headers: dict[str, str] = Field(
        default_factory=lambda: {
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
        },
        description="Headers added to every HTTP response (set {} to add none).",
    )
    content_security_policy: str | None = Field(
        default=(
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline';"
            " object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
        ),
        description="The Content-Security-Policy of every response but /docs (empty: none).",
    )
    image_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Hosts the page may load images from (the CSP's img-src), as images.example.com,"
            " *.example.com or http://host:port; a reply's image from any other host is shown"
            " as a link, so that loading it cannot leak anything without a click."
        ),
    )
    enable_chat_v2: bool = Field(
        default=False,
        validation_alias=AliasChoices("enable_chat_v2", "ENABLE_CHAT_V2", "PARLEY_ENABLE_CHAT_V2"),
    )
    enable_chat_v2_approvals: bool = Field(
        default=False,
        validation_alias=AliasChoices(
            "enable_chat_v2_approvals",
            "ENABLE_CHAT_V2_APPROVALS",
            "PARLEY_ENABLE_CHAT_V2_APPROVALS",
        ),
    )

    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    mcp_servers: list[McpServerConfig] = Field(default_factory=list)
    profiles: dict[str, ProfileConfig] = Field(default_factory=dict)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    user_limits: dict[str, LimitsConfig] = Field(default_factory=dict)
    prices: dict[str, dict[str, float]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _secret_key_for_per_user_servers(self) -> Settings:
        per_user = [s.name for s in self.mcp_servers if s.enabled and s.per_user]
        if per_user and not self.secret_keys:
            raise ValueError(
                f"the MCP server {per_user[0]!r} keeps each user's credential, encrypted:"
                " set PARLEY_SECRET_KEY (e.g. the output of `openssl rand -base64 32`)"
            )
        if any(len(key) < MIN_SECRET_KEY for key in self.secret_keys):
            raise ValueError(f"PARLEY_SECRET_KEY: each key needs {MIN_SECRET_KEY}+ characters")
        return self

    @property
    def secret_keys(self) -> list[str]:
        """``PARLEY_SECRET_KEY``'s keys, newest first (the first seals, every one opens)."""
        raw = self.secret_key.get_secret_value() if self.secret_key else ""
        return [key.strip() for key in raw.split(",") if key.strip()]

    @field_validator("data_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("public_url", mode="after")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parsed = urlsplit(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.query:
            raise ValueError(
                "PARLEY_PUBLIC_URL: an http(s) URL without a query, e.g. https://chat.example.com"
            )
        return value.rstrip("/")

    @field_validator("database_url", mode="after")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        """A PostgreSQL URL parley cannot hand to asyncpg is refused here, at start-up."""
        from parley.store.db import for_asyncpg

        if value:
            try:
                for_asyncpg(value)
            except ConfigError as exc:
                raise ValueError(exc.message) from None
        return value

    @field_validator("auth_none_user", mode="after")
    @classmethod
    def _user_id(cls, value: str) -> str:
        if not value.strip() or not value.isprintable():
            raise ValueError(f"{value!r} cannot be a user id (1 to 255 printable characters)")
        return value

    @field_validator("allowed_hosts", "image_hosts", "cors_origins", mode="before")
    @classmethod
    def _host_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if value.startswith("["):
                return json.loads(value)
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("allowed_hosts", mode="after")
    @classmethod
    def _host_patterns(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        names = [name.strip().lower() for name in value if name.strip()]
        for name in names:
            wildcard = name == "*" or name.startswith("*.")
            if "*" in name[1:] or (name.startswith("*") and not wildcard) or "/" in name:
                raise ValueError(f"{name!r}: use a host name, '*.example.com' or '*'")
        return names

    @field_validator("image_hosts", mode="after")
    @classmethod
    def _image_sources(cls, value: list[str]) -> list[str]:
        """Each host as a CSP source: ``https://`` unless ``http://`` is written."""
        sources = []
        for entry in (host.strip().lower().rstrip("/") for host in value if host.strip()):
            if not _IMAGE_HOST.fullmatch(entry):
                raise ValueError(
                    f"{entry!r}: use images.example.com, *.example.com or https://host:port"
                )
            sources.append(entry if "://" in entry else f"https://{entry}")
        return sources

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("PARLEY_CONFIG", "parley.toml"))
        toml = TomlConfigSettingsSource(settings_cls, toml_file=toml_path)
        return (init_settings, env_settings, toml)

    @property
    def effective_database_url(self) -> str:
        """The configured database, or SQLite inside the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'parley.db').resolve()}"

    @property
    def effective_allowed_hosts(self) -> list[str]:
        """The names accepted in the ``Host`` header (see the class docstring)."""
        if self.allowed_hosts is not None:
            return [*LOOPBACK_NAMES, *self.allowed_hosts]
        return list(LOOPBACK_NAMES) if is_loopback(self.host) else ["*"]

    @property
    def effective_csp(self) -> str | None:
        """The Content-Security-Policy sent: the configured one, its ``img-src`` extended with
        the image hosts; None when it is empty."""
        if not self.content_security_policy or not self.image_hosts:
            return self.content_security_policy or None
        hosts = " ".join(self.image_hosts)
        directives = [d.strip() for d in self.content_security_policy.split(";") if d.strip()]
        for index, directive in enumerate(directives):
            if directive.split()[0].lower() == "img-src":
                directives[index] = f"{directive} {hosts}"
                break
        else:
            directives.append(f"img-src 'self' data: blob: {hosts}")
        return "; ".join(directives)

    @property
    def jwt_secret_path(self) -> Path:
        return self.data_dir / "jwt_secret"

    def masked(self) -> dict[str, Any]:
        """The effective settings as JSON-able data, with every secret masked."""
        data = self.model_dump(mode="json")
        data["database_url"] = mask_url(self.effective_database_url)
        for name in ("redis_url", "jwks_url", "openai_base_url", "anthropic_base_url"):
            if data[name]:
                data[name] = mask_url(data[name])
        for name in (
            "jwt_secret",
            "secret_key",
            "openai_api_key",
            "anthropic_api_key",
            "metrics_token",
        ):
            if getattr(self, name) is not None:
                data[name] = "********"
        for provider in data["providers"].values():
            if provider.get("api_key"):
                provider["api_key"] = "********"
            if provider.get("base_url"):
                provider["base_url"] = mask_url(provider["base_url"])
        for server in data["mcp_servers"]:
            server["headers"] = {k: "********" for k in server.get("headers", {})}
            server["env"] = {k: "********" for k in server.get("env", {})}
            if server.get("client_secret"):
                server["client_secret"] = "********"
            if server.get("url"):
                server["url"] = mask_url(server["url"])
        return data


def ensure_jwt_secret(settings: Settings) -> str:
    """Return the HS256 secret: configured, or generated once and kept in the data directory."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    path = settings.jwt_secret_path
    if path.exists():
        return path.read_text().strip()
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret)
    return secret


def uses_local_secret(settings: Settings) -> bool:
    """True when tokens are signed with the secret parley generated for itself (dev mode)."""
    return settings.jwt_secret is None and settings.jwks_url is None


def signs_tokens(settings: Settings) -> bool:
    """True when parley has an HS256 secret (configured or its own), not only a JWKS."""
    return settings.jwks_url is None or bool(settings.jwt_secret)


def check_single_user(settings: Settings, host: str) -> None:
    """``PARLEY_AUTH=none`` is for loopback: on ``host`` beyond it, a :class:`ConfigError`
    unless ``PARLEY_AUTH_NONE_PUBLIC=true`` says that is meant."""
    if settings.auth == "none" and not settings.auth_none_public and not is_loopback(host):
        raise ConfigError(
            f"PARLEY_AUTH=none lets anyone who reaches {host} act as user"
            f" {settings.auth_none_user!r}; serve it on 127.0.0.1, or set"
            " PARLEY_AUTH_NONE_PUBLIC=true if that is meant"
        )


def is_loopback(host: str | None) -> bool:
    """``localhost`` or a loopback address (``127.0.0.1``, ``::1``, bracketed or not)."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
