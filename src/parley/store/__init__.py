"""Persistence: the only home of SQL. SQLAlchemy 2 (async) on SQLite or PostgreSQL, Alembic.

One module per aggregate, each a part of :class:`Store`, each statement scoped by the user in
its own WHERE clause, frozen values out (:mod:`parley.store.values`). A request names a
conversation or a run through :meth:`Store.reach` or :meth:`Store.reach_run` (projects.py), whose
statements join the caller's project membership; the rest take the user the conversation's rows
are kept under, which that answer gives (``Reach.owner``, ``Run.user_id``)::

    conversations.py  conversations: create, read, keyset pages, search and its snippets,
                      update, delete
    messages.py       the message tree: branches, pages, siblings, fork
    turns.py          a turn's writes: its start, checkpoints, its end (checkpoints.py batches)
    runs.py           runs (claimed once out of ``awaiting``) and the inputs they wait for
    audit.py          the tool-call audit log and remembered approvals
    projects.py       projects, their members, and who reaches a conversation or a run
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
from parley.store.projects import ProjectStore
from parley.store.runs import RunStore
from parley.store.tasks import TaskStore
from parley.store.turns import TurnStore


class Store(
    ConversationStore, MessageStore, TurnStore, RunStore, AuditStore, TaskStore, ProjectStore
):
    """All database access, one part per aggregate; each method opens its own short
    transaction and hands out frozen values."""


__all__ = ["Store"]
