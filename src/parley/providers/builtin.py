"""The built-in providers, registered through the same hook a plugin would use."""

from __future__ import annotations

from parley.config import ProviderConfig, Settings
from parley.providers.base import Provider
from parley.providers.registry import register_factory
from parley.providers.scripted import ScriptedProvider


def _secret(config: ProviderConfig, fallback: object) -> str | None:
    value = config.api_key or fallback
    get = getattr(value, "get_secret_value", None)
    return get() if get else None


def make_openai(name: str, config: ProviderConfig, settings: Settings) -> Provider:
    from parley.providers.openai import OpenAIProvider

    return OpenAIProvider(
        base_url=config.base_url or settings.openai_base_url,
        api_key=_secret(config, settings.openai_api_key),
        timeout=config.timeout,
        max_retries=config.max_retries,
        name=name,
        supports_images=config.vision,
    )


def make_anthropic(name: str, config: ProviderConfig, settings: Settings) -> Provider:
    from parley.providers.anthropic import AnthropicProvider

    return AnthropicProvider(
        base_url=config.base_url or settings.anthropic_base_url,
        api_key=_secret(config, settings.anthropic_api_key),
        timeout=config.timeout,
        max_retries=config.max_retries,
        name=name,
        supports_images=config.vision,
    )


def make_local(name: str, config: ProviderConfig, settings: Settings) -> Provider:
    from parley.providers.local import LocalProvider

    return LocalProvider(model_path=settings.local_model, name=name)


def make_scripted(name: str, config: ProviderConfig, settings: Settings) -> Provider:
    if config.script:
        return ScriptedProvider.from_file(config.script)
    return ScriptedProvider(demo=True)


register_factory("openai", make_openai)
register_factory("anthropic", make_anthropic)
register_factory("local", make_local)
register_factory("scripted", make_scripted)
