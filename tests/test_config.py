"""Settings: what ``parley config`` prints hides every credential, wherever it is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from parley.cli import app
from parley.config import Settings
from parley.masking import mask_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:hunter2@proxy.example/v1", "https://user:****@proxy.example/v1"),
        ("https://ghp_token@proxy.example/v1", "https://****@proxy.example/v1"),
        ("redis://:hunter2@cache:6379/0", "redis://:****@cache:6379/0"),
        (
            "postgresql+asyncpg://app:pa/ss?w0rd@db/parley",
            "postgresql+asyncpg://app:****@db/parley",
        ),
        (
            "https://gw.example/v1?api_key=hunter2&model=x",
            "https://gw.example/v1?api_key=****&model=x",
        ),
        ("https://gw.example/v1?key=AIza1&alt=sse", "https://gw.example/v1?key=****&alt=sse"),
        (
            "https://gw.example/?sig=abc;access_token=def",
            "https://gw.example/?sig=****;access_token=****",
        ),
        (
            "https://gw.example/?contact=me@example.com",
            "https://gw.example/?contact=me@example.com",
        ),
        ("http://localhost:11434/v1", "http://localhost:11434/v1"),
        ("sqlite+aiosqlite:////data/parley.db", "sqlite+aiosqlite:////data/parley.db"),
    ],
)
def test_a_url_is_shown_without_its_credentials(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_parley_config_prints_no_credential_of_any_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tmp_path / "parley.toml"
    toml.write_text(
        """
[providers.gateway]
type = "openai"
base_url = "https://gw-user:provider-secret@gateway.example/v1?api-key=query-secret"

[[mcp_servers]]
name = "remote"
url = "https://mcp.example/mcp?token=mcp-secret"
"""
    )
    env = {
        "PARLEY_CONFIG": str(toml),
        "PARLEY_DATA_DIR": str(tmp_path / "data"),
        "OPENAI_BASE_URL": "https://me:openai-secret@proxy.example/v1",
        "ANTHROPIC_BASE_URL": "https://proxy.example/anthropic?key=anthropic-secret",
        "PARLEY_JWKS_URL": "https://idp.example/jwks?access_token=jwks-secret",
        "PARLEY_REDIS_URL": "redis://:redis-secret@cache:6379/0",
    }
    result = CliRunner().invoke(app, ["config"], env=env)
    assert result.exit_code == 0, result.output
    names = result.output.replace("jwt_secret", "").replace("secret_key", "")  # settings' names
    names = names.replace("client_secret", "")
    assert "secret" not in names, result.output
    printed = json.loads(result.output)
    assert printed["openai_base_url"] == "https://me:****@proxy.example/v1"
    assert printed["anthropic_base_url"] == "https://proxy.example/anthropic?key=****"
    gateway = printed["providers"]["gateway"]["base_url"]
    assert gateway == "https://gw-user:****@gateway.example/v1?api-key=****"
    assert printed["mcp_servers"][0]["url"] == "https://mcp.example/mcp?token=****"


def test_image_hosts_are_read_from_the_environment_as_a_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PARLEY_IMAGE_HOSTS", "images.example.com, https://*.cdn.example:*")
    assert Settings().image_hosts == ["https://images.example.com", "https://*.cdn.example:*"]


@pytest.mark.parametrize(
    "entry",
    ["*", "https:", "images.example.com/path", "a.example 'unsafe-inline'", "x;script-src *"],
)
def test_an_image_host_that_is_not_a_host_is_refused_at_start(entry: str) -> None:
    with pytest.raises(ValidationError):
        Settings(image_hosts=[entry])


def test_image_hosts_join_an_img_src_the_configured_policy_lacks() -> None:
    settings = Settings(content_security_policy="default-src 'self'", image_hosts=["img.example"])
    assert (
        settings.effective_csp
        == "default-src 'self'; img-src 'self' data: blob: https://img.example"
    )
    assert Settings(content_security_policy="", image_hosts=["img.example"]).effective_csp is None


def test_cors_origins_come_from_a_comma_separated_or_json_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PARLEY_CORS_ORIGINS", "http://localhost:3000, https://editor.example")
    assert Settings(data_dir=tmp_path).cors_origins == [
        "http://localhost:3000",
        "https://editor.example",
    ]
    monkeypatch.setenv("PARLEY_CORS_ORIGINS", '["http://localhost:5173"]')
    assert Settings(data_dir=tmp_path).cors_origins == ["http://localhost:5173"]
