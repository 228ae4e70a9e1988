"""What parley knows a model can do: the built-in table, parley.toml's ``[models]`` overrides,
and the provider's own limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from parley.config import ModelConfig, Settings
from parley.providers.capabilities import DEFAULT_CONTEXT_WINDOW, ModelCatalog
from parley.providers.registry import build_registry


def test_the_embedded_default_model_is_known_not_to_call_tools_nor_name_chats() -> None:
    caps = ModelCatalog().capabilities("local/smollm2-135m-instruct", images=False)
    assert (caps.tools, caps.vision, caps.titles, caps.known) == (False, False, False, True)


@pytest.mark.parametrize(
    ("ref", "window"),
    [
        ("openai/gpt-4o-mini", 128_000),
        ("anthropic/claude-sonnet-4-5", 200_000),
        ("ollama/qwen2.5:7b", 32_768),  # the model's name decides, whoever serves it
    ],
)
def test_known_models_call_tools_and_have_their_context_window(ref: str, window: int) -> None:
    caps = ModelCatalog().capabilities(ref)
    assert (caps.tools, caps.context_window, caps.known) == (True, window, True)


def test_an_unknown_model_calls_tools_with_the_safe_default_window() -> None:
    caps = ModelCatalog().capabilities("vllm/some-finetune")
    assert (caps.tools, caps.context_window, caps.known) == (True, DEFAULT_CONTEXT_WINDOW, False)


def test_config_overrides_a_field_by_exact_name_or_pattern_and_keeps_the_rest() -> None:
    catalog = ModelCatalog(
        {
            "local/smollm2-135m-instruct": ModelConfig(tools=True),
            "vllm/*": ModelConfig(tools=False, context_window=65_536),
        }
    )
    local = catalog.capabilities("local/smollm2-135m-instruct", images=False)
    assert (local.tools, local.context_window) == (True, 4_096)
    tuned = catalog.capabilities("vllm/some-finetune")
    assert (tuned.tools, tuned.context_window, tuned.known) == (False, 65_536, True)


def test_a_provider_that_takes_no_images_makes_every_model_blind() -> None:
    assert ModelCatalog().capabilities("openai/gpt-4o", images=True).vision
    assert not ModelCatalog().capabilities("openai/gpt-4o", images=False).vision


def test_the_toml_models_table_reaches_the_resolved_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tmp_path / "parley.toml"
    toml.write_text('[models."scripted/demo"]\ntools = false\ncontext_window = 2048\n')
    monkeypatch.setenv("PARLEY_CONFIG", str(toml))
    resolved = build_registry(Settings(data_dir=tmp_path, provider="scripted")).resolve(None)
    assert resolved.ref == "scripted/demo"
    assert (resolved.capabilities.tools, resolved.capabilities.context_window) == (False, 2048)


def test_a_gguf_of_ones_own_is_named_by_its_file(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, provider="local", local_model="~/models/Qwen2.5-3B-Instruct.gguf"
    )
    resolved = build_registry(settings).resolve(None)
    assert resolved.ref == "local/qwen2.5-3b-instruct"
    assert resolved.capabilities.tools is True
