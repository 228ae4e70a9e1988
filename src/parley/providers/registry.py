"""Providers by name, and the one place a ``provider/model`` name is parsed."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from parley.config import ProviderConfig, Settings
from parley.errors import ConfigError, InvalidModel
from parley.providers.base import Provider
from parley.providers.capabilities import Capabilities, ModelCatalog

Factory = Callable[[str, ProviderConfig, Settings], Provider]
FACTORIES: dict[str, Factory] = {}


def register_factory(kind: str, factory: Factory) -> None:
    """Teach parley a new kind of provider (built-ins use this too)."""
    FACTORIES[kind] = factory


@dataclass(frozen=True)
class ResolvedModel:
    provider_name: str
    provider: Provider
    model: str
    capabilities: Capabilities = field(default_factory=Capabilities)

    @property
    def ref(self) -> str:
        return f"{self.provider_name}/{self.model}"


class ProviderRegistry:
    def __init__(self, default: str | None = None, catalog: ModelCatalog | None = None) -> None:
        self.catalog = catalog or ModelCatalog()
        self._providers: dict[str, Provider] = {}
        self._defaults: dict[str, str] = {}
        self._models: dict[str, list[str]] = {}
        self.default = default

    def register(
        self, name: str, provider: Provider, *, default_model: str, models: list[str] | None = None
    ) -> None:
        self._providers[name] = provider
        self._defaults[name] = default_model
        self._models[name] = models or [default_model]
        if self.default is None:
            self.default = name

    def get(self, name: str) -> Provider:
        try:
            return self._providers[name]
        except KeyError:
            raise InvalidModel(_unknown("provider", name, list(self._providers))) from None

    def names(self) -> list[str]:
        return list(self._providers)

    def configured_models(self) -> list[str]:
        return [f"{p}/{m}" for p, models in self._models.items() for m in models]

    def resolve(self, model: str | None, provider: str | None = None) -> ResolvedModel:
        """``provider/model``, a bare model of the default (or given) provider, or the default."""
        if model and "/" in model and provider is None:
            head, _, tail = model.partition("/")
            if head in self._providers:
                provider, model = head, tail
            elif not any(model in models for models in self._models.values()):
                raise InvalidModel(_unknown("provider", head, list(self._providers)))
        name = provider or self.default
        if name is None:
            raise InvalidModel("no provider is configured")
        instance = self.get(name)
        model = model or self._defaults[name]
        caps = self.catalog.capabilities(f"{name}/{model}", images=instance.supports_images)
        return ResolvedModel(name, instance, model, caps)

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()


def _unknown(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {name!r}.{hint} Known: {', '.join(sorted(known)) or 'none'}."


def build_registry(settings: Settings) -> ProviderRegistry:
    """Every provider in the settings, plus the implied ones (env keys, the default)."""
    configs = dict(settings.providers)
    _add_implied(configs, settings)
    default = settings.provider or _default_provider(configs)
    if default not in configs:
        configs[default] = ProviderConfig(type=_kind_of(default))
    registry = ProviderRegistry(default=default, catalog=ModelCatalog(settings.models))
    for name, config in configs.items():
        factory = FACTORIES.get(config.type)
        if factory is None:
            raise ConfigError(_unknown("provider type", config.type, list(FACTORIES)))
        provider = factory(name, config, settings)
        models = config.models or ([config.default_model] if config.default_model else [])
        default_model = _default_model(name, config, settings)
        registry.register(name, provider, default_model=default_model, models=models or None)
    return registry


def _add_implied(configs: dict[str, ProviderConfig], settings: Settings) -> None:
    if "openai" not in configs and (settings.openai_api_key or settings.openai_base_url):
        configs["openai"] = ProviderConfig(type="openai")
    if "anthropic" not in configs and settings.anthropic_api_key:
        configs["anthropic"] = ProviderConfig(type="anthropic")
    configs.setdefault("scripted", ProviderConfig(type="scripted"))


def _default_provider(configs: dict[str, ProviderConfig]) -> str:
    from parley.providers import local_available

    if local_available():
        return "local"
    explicit = [n for n in configs if n != "scripted"]
    return explicit[0] if explicit else "scripted"


def _kind_of(name: str) -> str:
    return name if name in ("openai", "anthropic", "local", "scripted") else "openai"


def _default_model(name: str, config: ProviderConfig, settings: Settings) -> str:
    if settings.model and (settings.provider in (None, name)):
        return settings.model
    if config.default_model:
        return config.default_model
    if config.models:
        return config.models[0]
    if config.type == "local" and settings.local_model:
        return Path(settings.local_model).stem.lower()  # a GGUF of one's own: its capabilities
    return {
        "openai": "gpt-4o-mini",
        "anthropic": "claude-sonnet-4-5",
        "scripted": "demo",
        "local": "smollm2-135m-instruct",
    }.get(config.type, "default")
