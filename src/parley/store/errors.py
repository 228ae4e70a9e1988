"""The store's one error: a database failure, translated from SQLAlchemy's at the seam."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy.exc import SQLAlchemyError


class StorageError(Exception):
    """The database refused or failed a statement (not a rule of parley's: those are
    :class:`~parley.errors.ParleyError`). The message is the driver's, for logs only."""


@contextlib.contextmanager
def storage_errors() -> Iterator[None]:
    """Raise SQLAlchemy's errors as :class:`StorageError` (``from`` the original)."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise StorageError(str(getattr(exc, "orig", None) or exc)) from exc
