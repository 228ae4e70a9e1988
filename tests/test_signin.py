"""The sign-in link on the console: ``parley serve`` prints one after its banner when it signs
tokens with its own secret, and ``parley signin-link`` prints another that the running server
redeems (the two processes share the database)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest
from tests.conftest import Live
from tests.support.lines import parley
from typer.testing import CliRunner

from parley.cli import app

LINK = r"Sign in: (http://127\.0\.0\.1:\d+/)\?signin=([\w-]{43})$"


def _serve_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PARLEY_DATA_DIR": str(tmp_path / "data"),
        "PARLEY_PROVIDER": "scripted",
        "COLUMNS": "80",
        **extra,
    }


def _redeem(base: str, code: str) -> httpx.Response:
    return httpx.post(f"{base}api/auth/signin-link", json={"code": code}, timeout=10)


@pytest.mark.parametrize(
    ("args", "env", "user"),
    [
        (["--user", "bob"], {}, "bob"),
        ([], {"PARLEY_SIGNIN_USER": "carol"}, "carol"),
        ([], {"LOGNAME": "dora", "USER": "dora"}, "dora"),
    ],
)
def test_parley_serve_prints_a_sign_in_link_after_its_banner_that_works_once(
    tmp_path: Path, args: list[str], env: dict[str, str], user: str
) -> None:
    serve_env = _serve_env(tmp_path, **env)
    with parley("serve", "--port", "0", *args, env=serve_env, cwd=tmp_path) as output:
        url = output.wait_for(r"parley \S+ on (http://127\.0\.0\.1:\d+/)").group(1)
        base, code = output.wait_for(LINK).groups()
        first, second = _redeem(base, code), _redeem(base, code)
    assert base == url
    assert first.status_code == 200, first.text
    assert first.json()["user"] == user
    assert second.status_code == 401
    assert "Traceback" not in output.text
    banner = " ".join(output.text.replace("│", " ").split())
    assert "or create an account with `parley user add NAME`" in banner


def test_parley_serve_prints_no_link_when_tokens_are_signed_with_a_configured_secret(
    tmp_path: Path,
) -> None:
    env = _serve_env(tmp_path, PARLEY_JWT_SECRET="s" * 40)
    with parley("serve", "--port", "0", env=env, cwd=tmp_path) as output:
        output.wait_for(r"parley \S+ on http://")
    with pytest.raises(AssertionError, match="ended without"):
        output.wait_for("Sign in")  # the rest of the output, to its end


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"jwt_secret": None}


@pytest.mark.parametrize(
    ("args", "env", "user"),
    [(["--user", "erin"], {}, "erin"), ([], {"PARLEY_SIGNIN_USER": "frank"}, "frank")],
)
async def test_parley_signin_link_prints_a_link_the_running_server_redeems(
    live: Live, args: list[str], env: dict[str, str], user: str
) -> None:
    settings = live.services.settings
    cli_env = {
        "PARLEY_DATA_DIR": str(settings.data_dir),
        "PARLEY_DATABASE_URL": str(settings.database_url),
        "PARLEY_PORT": live.url.rsplit(":", 1)[1],
        **env,
    }
    printed = await asyncio.to_thread(CliRunner().invoke, app, ["signin-link", *args], env=cli_env)
    assert printed.exit_code == 0, printed.output
    base, _, code = printed.output.strip().partition("?signin=")
    assert base == f"{live.url}/"
    async with live.client(None) as http:
        first = await http.post("/api/auth/signin-link", json={"code": code})
        second = await http.post("/api/auth/signin-link", json={"code": code})
    assert first.status_code == 200 and first.json()["user"] == user
    assert second.status_code == 401


def test_parley_signin_link_refuses_when_parley_signs_no_tokens(tmp_path: Path) -> None:
    env = {"PARLEY_DATA_DIR": str(tmp_path), "PARLEY_JWKS_URL": "https://id.example/jwks.json"}
    printed = CliRunner().invoke(app, ["signin-link", "--user", "bob"], env=env)
    assert printed.exit_code == 1
    assert "signs no tokens" in printed.output
