"""Settings: the only place parley reads its environment.

Sources, highest priority first: keyword arguments (tests), ``PARLEY_*`` environment variables,
the standard ``OPENAI_*`` / ``ANTHROPIC_*`` variables, then ``parley.toml`` (path from
``PARLEY_CONFIG``, default ``./parley.toml``). Everything is read once, at start-up, and the
resulting :class:`Settings` object is passed down.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_DATA_DIR = Path(".parley")


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


class McpServerConfig(BaseModel):
    """One MCP server in ``[[mcp_servers]]``."""

    name: str
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True
    require_approval: bool | list[str] = False
    timeout: float = 30.0


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
    """Everything parley can be told. Build it directly in tests: ``Settings(data_dir=tmp)``."""

    model_config = SettingsConfigDict(
        env_prefix="PARLEY_",
        extra="ignore",
        populate_by_name=True,
        env_nested_delimiter="__",
    )

    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str | None = None
    jwt_secret: SecretStr | None = None
    jwks_url: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    provider: str | None = None
    model: str | None = None
    redis_url: str | None = None
    config: Path = Path("parley.toml")

    host: str = "127.0.0.1"
    port: int = 8000
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
    run_timeout: float = 600.0
    checkpoint_interval: float = 1.0
    heartbeat_interval: float = 15.0
    # `parley serve`: the garbage collector's full collections at most this often, when no run
    # is in progress (or after ten times this under constant load); 0: Python's own schedule.
    # See parley.serving.FullCollections.
    full_collection_interval: float = 60.0
    max_steps: int = 8
    reply_tokens_estimate: int = 1024
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
    cors_origins: list[str] = Field(default_factory=list)
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
            "default-src 'self'; img-src 'self' data: blob: https:; style-src 'self' 'unsafe-inline';"
            " object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
        ),
        description="The Content-Security-Policy of every response but /docs (empty: none).",
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

    @field_validator("data_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

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
    def jwt_secret_path(self) -> Path:
        return self.data_dir / "jwt_secret"

    def masked(self) -> dict[str, Any]:
        """The effective settings as JSON-able data, with every secret masked."""
        data = self.model_dump(mode="json")
        data["database_url"] = mask_url(self.effective_database_url)
        if self.redis_url:
            data["redis_url"] = mask_url(self.redis_url)
        for name in ("jwt_secret", "openai_api_key", "anthropic_api_key", "metrics_token"):
            if getattr(self, name) is not None:
                data[name] = "********"
        for provider in data["providers"].values():
            if provider.get("api_key"):
                provider["api_key"] = "********"
        for server in data["mcp_servers"]:
            server["headers"] = {k: "********" for k in server.get("headers", {})}
            server["env"] = {k: "********" for k in server.get("env", {})}
        return data


def mask_url(url: str) -> str:
    """Hide the password in a ``scheme://user:password@host`` URL."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:****@{host}" if ":" in creds else url


def ensure_jwt_secret(settings: Settings) -> str:
    """Return the HS256 secret: configured, or generated once and kept in the data directory."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    path = settings.jwt_secret_path
    if path.exists():
        return path.read_text().strip()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret)
    return secret


def uses_local_secret(settings: Settings) -> bool:
    """True when tokens are signed with the secret parley generated for itself (dev mode)."""
    return settings.jwt_secret is None and settings.jwks_url is None
