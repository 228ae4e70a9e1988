"""schemathesis over parley's own ``/openapi.json``: every operation, generated requests each.

Each generated request (valid ones and deliberately invalid ones) must get:

* no 5xx (``not_a_server_error``);
* a status the spec documents for the operation (``status_code_conformance``): errors are the
  spec's ``4XX``, the resume routes' idle answer its ``204``;
* a documented content type (``content_type_conformance``): JSON, or ``text/event-stream``
  where the operation streams;
* a body valid against the documented schema (``response_schema_conformance``): every error in
  the contract's ``{"success": false, "error": {code, message}}``, ``/v1`` in OpenAI's shape.

Every operation is fuzzed, none is excluded. The routes that start a run (chat in every door)
get parley's demo provider (``ScriptedProvider()`` with no script), which answers any request by
echoing it, so no generated case waits on a script; no tool is registered, so no run waits for
an approval or an elicitation. Chat-v2 is mounted so its routes are in the spec.

The spec is built from the app at import (``create_app(...).openapi()``, no server needed) and
the requests go to a real uvicorn on a loopback socket in a thread, on SQLite (the hand-picked
hostile cases in ``test_hostile_input.py`` run on PostgreSQL too). schemathesis's lazy
``from_fixture`` loader does not work with pytest 9, hence the spec from the app.
"""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from tests.conftest import auth, make_settings

from parley.app import create_app
from parley.config import Settings
from parley.providers.registry import ProviderRegistry
from parley.providers.scripted import ScriptedProvider
from parley.tools.registry import ToolRegistry

# Tuned for two shared cores: about 95 s for 31 operations with a token, 15 s without.
EXAMPLES = 100
EXAMPLES_WITHOUT_TOKEN = 15
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


def _settings(tmp: Path, database_url: str) -> Settings:
    return make_settings(tmp, database_url, enable_chat_v2=True)


schema = schemathesis.openapi.from_dict(
    create_app(_settings(Path("unused"), "sqlite://")).openapi()
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[str]:
    """A parley on a loopback socket, served by uvicorn in its own thread and event loop.

    The socket listens before the thread starts, so requests queue until uvicorn accepts them.
    """
    tmp = tmp_path_factory.mktemp("schemathesis")
    shutil.copy(sqlite_template, tmp / "parley.db")
    providers = ProviderRegistry(default="scripted")
    providers.register("scripted", ScriptedProvider(), default_model="demo")
    settings = _settings(tmp, f"sqlite+aiosqlite:///{tmp / 'parley.db'}")
    app = create_app(settings, providers=providers, tools=ToolRegistry())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
    assert not thread.is_alive(), "uvicorn did not shut down"


@schema.parametrize()
@FUZZ
def test_every_operation_answers_generated_requests_within_its_schema(
    case: schemathesis.Case, served: str
) -> None:
    case.call_and_validate(base_url=served, headers=auth("alice"), checks=CHECKS, timeout=30)


@schema.parametrize()
@settings(FUZZ, max_examples=EXAMPLES_WITHOUT_TOKEN)
def test_every_operation_without_a_token_answers_within_its_schema(
    case: schemathesis.Case, served: str
) -> None:
    """Nothing but the health checks answers a request without a token with a success."""
    response = case.call_and_validate(base_url=served, checks=CHECKS, timeout=30)
    if case.path not in ("/healthz", "/readyz"):
        assert response.status_code >= 400, f"{case.method} {case.path}: {response.status_code}"
