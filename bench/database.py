"""Database work, measured on an in-process parley (scripted provider; SQLite in a temp dir,
or the PostgreSQL database it is given).

Statements are counted with a SQLAlchemy ``before_cursor_execute`` listener and commits with a
``commit`` listener, as in ``tests/engine/test_persistence.py``; the big conversation and the
long list are inserted directly through the Store's sessions, then read through the HTTP API.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import event

from parley.app import create_app
from parley.auth import issue_token
from parley.chat.messages import text_of
from parley.config import Settings
from parley.providers.registry import ProviderRegistry
from parley.providers.scripted import ScriptedProvider
from parley.store import Store, migrate
from parley.store.tables import Conversation, Message
from parley.tools.registry import ToolRegistry

SECRET = "bench-secret-" + "x" * 40


@asynccontextmanager
async def in_process(
    workdir: Path, database_url: str = ""
) -> AsyncIterator[tuple[str, Any, ScriptedProvider]]:
    """A parley on a loopback port in this event loop: its URL, app and scripted provider."""
    url = database_url or f"sqlite+aiosqlite:///{workdir / 'inproc.db'}"
    await asyncio.to_thread(migrate.upgrade, url)
    settings = Settings(
        data_dir=workdir / "inproc",
        database_url=url,
        jwt_secret=SECRET,
        auto_migrate=False,
        log_level="WARNING",
    )
    scripted = ScriptedProvider(turns=[])
    registry = ProviderRegistry(default="scripted")
    registry.register("scripted", scripted, default_model="demo")
    app = create_app(settings, providers=registry, tools=ToolRegistry())
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # start-up failed: raise its error
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", app, scripted
    finally:
        server.should_exit = True
        await task


def _client(url: str, user: str) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {issue_token(SECRET, user)}"}
    return httpx.AsyncClient(base_url=url, headers=headers, timeout=60)


async def statements_per_reply(
    url: str, app: Any, scripted: ScriptedProvider
) -> dict[str, dict[str, int]]:
    """SQL statements and commits for one reply of 500 chunks and one of 5: equal counts mean
    nothing is written per token."""
    store: Store = app.state.services.store
    engines = store.sync_engines
    counts: dict[str, dict[str, int]] = {}
    seen = {"statements": 0, "commits": 0}

    def statement(*_: Any) -> None:
        seen["statements"] += 1

    def commit(*_: Any) -> None:
        seen["commits"] += 1

    async with _client(url, "stmts") as http:
        for tokens in (500, 5):
            convo = (await http.post("/api/conversations", json={})).json()["id"]
            scripted.enqueue([{"text": [f"t{i} " for i in range(tokens)]}])
            for engine in engines:
                event.listen(engine, "before_cursor_execute", statement)
                event.listen(engine, "commit", commit)
            async with http.stream(
                "POST", f"/api/conversations/{convo}/messages", json={"content": "x"}
            ) as r:
                await r.aread()
            for engine in engines:
                event.remove(engine, "before_cursor_execute", statement)
                event.remove(engine, "commit", commit)
            counts[f"tokens_{tokens}"] = dict(seen)
            seen.update(statements=0, commits=0)
    return counts


async def _insert_messages(store: Store, user: str, count: int) -> str:
    """One conversation of ``count`` messages in a single chain, written in one transaction."""
    convo = await store.create_conversation(user, title="big")
    parent: str | None = None
    async with store.sessions() as session, session.begin():
        for depth in range(count):
            parts = [{"type": "text", "text": f"message {depth} " + "lorem ipsum " * 20}]
            when = convo.created_at + timedelta(milliseconds=depth)
            message = Message(
                id=f"msg_bench{depth:08d}", conversation_id=convo.id, user_id=user,
                parent_id=parent, depth=depth, role="user" if depth % 2 == 0 else "assistant",
                parts=parts, text=text_of(parts), status="complete", created_at=when, updated_at=when,
            )  # fmt: skip
            session.add(message)
            parent = message.id
        row = await session.get(Conversation, convo.id)
        assert row is not None
        row.active_leaf_id = parent
    return convo.id


async def _insert_conversations(store: Store, user: str, count: int) -> None:
    await store.ensure_user(user)
    async with store.sessions() as session, session.begin():
        for i in range(count):
            session.add(
                Conversation(id=f"conv_bench{i:08d}", user_id=user, title=f"chat {i}", metadata_={})
            )


async def _median_get(http: httpx.AsyncClient, path: str, repeat: int) -> dict[str, float]:
    (await http.get(path)).raise_for_status()  # warm up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        (await http.get(path)).raise_for_status()
        times.append(time.perf_counter() - started)
    return {"p50_ms": statistics.median(times) * 1000, "max_ms": max(times) * 1000}


async def big_reads(url: str, app: Any, size: int, repeat: int = 10) -> dict[str, Any]:
    """Open a ``size``-message conversation and list ``size`` conversations, first page of 50."""
    store: Store = app.state.services.store
    convo = await _insert_messages(store, "big", size)
    await _insert_conversations(store, "many", size)
    async with _client(url, "big") as http:
        opened = await _median_get(http, f"/api/conversations/{convo}?limit=50", repeat)
    async with _client(url, "many") as http:
        listed = await _median_get(http, "/api/conversations?limit=50", repeat)
    return {"size": size, "open_conversation": opened, "list_conversations": listed}
