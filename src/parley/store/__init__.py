"""Persistence: SQLAlchemy 2 (async) on SQLite or PostgreSQL, with Alembic migrations."""
