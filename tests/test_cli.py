"""The ``parley`` command, run in-process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.fakes.openai_server import FakeOpenAI, Scenario, models
from typer.testing import CliRunner

from parley.cli import app


@pytest.mark.parametrize(
    ("listed", "model", "status"),
    [
        (("llama3", "qwen3"), "qwen3", "yes (2 models)"),
        (("llama3:latest",), "llama3", "yes (1 models)"),
        (
            ("llama3", "qwen3"),
            "gpt-4o-mini",
            "yes, but it does not serve gpt-4o-mini (it lists 2 models)",
        ),
    ],
)
async def test_parley_models_says_when_a_provider_does_not_serve_its_default_model(
    tmp_path: Path, listed: tuple[str, ...], model: str, status: str
) -> None:
    env = {
        "PARLEY_DATA_DIR": str(tmp_path / "data"),
        "PARLEY_PROVIDER": "openai",
        "PARLEY_MODEL": model,
        "OPENAI_API_KEY": "sk-test",
        "COLUMNS": "200",  # one table row a line
    }
    async with FakeOpenAI() as fake:
        fake.enqueue(models(*listed))
        env["OPENAI_BASE_URL"] = fake.base_url
        result = await asyncio.to_thread(CliRunner().invoke, app, ["models"], env=env)
        fake.assert_done()
    assert result.exit_code == 0, result.output
    [row] = [line for line in result.output.splitlines() if " openai " in line]
    assert f" {model} " in row and status in row


@pytest.mark.parametrize("status", [200, 404])
async def test_parley_models_says_in_one_line_when_the_base_url_answers_a_web_page(
    tmp_path: Path, status: int
) -> None:
    env = {
        "PARLEY_DATA_DIR": str(tmp_path / "data"),
        "PARLEY_PROVIDER": "openai",
        "OPENAI_API_KEY": "sk-test",
        "COLUMNS": "300",
    }
    page = Scenario(status, steps=[b"<!doctype html><title>Router</title>"], media_type="text/html")
    async with FakeOpenAI() as fake:
        fake.enqueue(page)
        env["OPENAI_BASE_URL"] = fake.base_url
        result = await asyncio.to_thread(CliRunner().invoke, app, ["models"], env=env)
    assert result.exit_code == 0, result.output
    [row] = [line for line in result.output.splitlines() if " openai " in line]
    reason = f"no: openai answered HTML, not the OpenAI API (status {status}) — check the base URL"
    assert reason in row, result.output
    assert "_set_private_attributes" not in result.output
