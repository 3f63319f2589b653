"""The database: one `Storage` API over SQLite (embedded default) or MySQL (production)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs

from .database import Database
from .errors import Contention, DuplicateKey, StorageError, StorageUnavailable
from .migrations import SCHEMA_VERSION
from .mysql import MySQLDatabase, MySQLParams
from .records import (
    Attendance,
    Classroom,
    Comment,
    Departure,
    Member,
    Membership,
    Post,
    Room,
    RoomEvent,
    StateValue,
    StateWrite,
    TagCount,
    User,
)
from .sqlite import SQLiteDatabase
from .store import CHANGE_CLASSROOM, CHANGE_USER, Storage

__all__ = [
    "CHANGE_CLASSROOM",
    "CHANGE_USER",
    "SCHEMA_VERSION",
    "Attendance",
    "Classroom",
    "Comment",
    "Contention",
    "Departure",
    "DuplicateKey",
    "Member",
    "Membership",
    "MySQLParams",
    "Post",
    "Room",
    "RoomEvent",
    "StateValue",
    "StateWrite",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "TagCount",
    "User",
    "database_for",
    "open_storage",
]


def database_for(url: str) -> Database:
    """`sqlite:///relative.db`, `sqlite:////abs/path.db`, `sqlite://:memory:` or
    `mysql://user:pass@host:port/db?pool=N`. Raises ValueError for anything else; does no I/O,
    so it also serves to check a URL early."""
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        path = path.removeprefix("/") if path != ":memory:" else path
        if not path:
            raise ValueError(f"no file in database URL {url!r}")
        return SQLiteDatabase(path)
    if url.startswith("mysql://"):
        return MySQLDatabase(MySQLParams.from_url(url))
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///FILE or mysql://...")


@asynccontextmanager
async def open_storage(url: str, *, pool_size: int | None = None) -> AsyncIterator[Storage]:
    """Open the database named by `url` (raises StorageUnavailable if it cannot be reached)
    and close it on exit. Does not create the schema: see `Storage.init_schema`.
    `pool_size` overrides the URL's MySQL pool size (SQLite has no pool)."""
    db = database_for(url)
    if pool_size is not None and isinstance(db, MySQLDatabase):
        db = MySQLDatabase(attrs.evolve(db.params, pool_size=pool_size))
    await db.open()
    storage = Storage(db)
    try:
        yield storage
    finally:
        await storage.aclose()
