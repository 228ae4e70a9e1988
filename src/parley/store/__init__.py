"""Persistence: the only home of SQL. SQLAlchemy 2 (async) on SQLite or PostgreSQL, Alembic.

One module per aggregate, each a part of :class:`Store`, each statement scoped by the user in
its own WHERE clause, frozen values out (:mod:`parley.store.values`)::

    conversations.py  conversations: create, read, keyset pages and search, update, delete
    messages.py       the message tree: branches, pages, siblings, fork
    turns.py          a turn's writes: its start, checkpoints, its end (checkpoints.py batches)
    runs.py           runs (claimed once out of ``awaiting``) and the inputs they wait for
    audit.py          the tool-call audit log and remembered approvals
    tasks.py          the todo tools' tasks;  signin_codes.py  one-time sign-in codes
    credentials.py    users' own MCP credentials, sealed (:mod:`parley.credentials` seals them)
    base.py           transactions, SQLite's one writer at a time, users
    db.py, sqlite.py  the engine and its dialects' settings;  errors.py  StorageError
    tables.py, migrations/, migrate.py   the schema and Alembic
"""

from __future__ import annotations

from parley.store.audit import AuditStore
from parley.store.conversations import ConversationStore
from parley.store.messages import MessageStore
from parley.store.runs import RunStore
from parley.store.tasks import TaskStore
from parley.store.turns import TurnStore


class Store(ConversationStore, MessageStore, TurnStore, RunStore, AuditStore, TaskStore):
    """All database access, one part per aggregate; each method opens its own short
    transaction and hands out frozen values."""


__all__ = ["Store"]
