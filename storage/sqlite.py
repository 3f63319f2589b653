"""The embedded backend: one SQLite file in WAL mode, one connection, calls in a worker thread.

SQLite allows one writer at a time, so one connection behind a lock loses nothing and keeps
transactions simple: a transaction holds the lock from BEGIN IMMEDIATE to COMMIT. Each call
runs in `trio.to_thread` so the event loop never waits on the disk.

Cancellation: SQLite's own busy wait (another process holds the write lock) cannot be
interrupted, so the connection has none (timeout 0): a busy statement is retried here, with
trio sleeps in between, for up to BUSY_TIMEOUT_MS, and a cancelled caller leaves at once. A
statement running when its caller is cancelled is interrupted (`Connection.interrupt`), and
the lock is released only once its thread has finished. The shared connection is never left
inside a transaction: when COMMIT or ROLLBACK fails, it is rolled back or else reopened.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import datetime
from typing import Final, TypeVar

import trio

from .database import Database, Dialect, Executor, Params, Row, Written
from .errors import DuplicateKey, StorageError, StorageUnavailable
from .stats import timed

SQLITE_DIALECT: Final = Dialect(name="sqlite", insert_ignore="INSERT OR IGNORE", for_update="",
                                 update_returning=True)
# How long a statement waits for another process holding the write lock before failing.
BUSY_TIMEOUT_MS: Final = 10_000

T = TypeVar("T")


def _adapt_datetime(value: datetime) -> str:
    return value.isoformat(sep=" ")


def _convert_datetime(raw: bytes) -> datetime:
    return datetime.fromisoformat(raw.decode())


# Explicit converters: the implicit datetime adapters of sqlite3 are deprecated since 3.12.
sqlite3.register_adapter(datetime, _adapt_datetime)
sqlite3.register_converter("DATETIME", _convert_datetime)


def _translate(exc: sqlite3.Error) -> StorageError:
    if isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc):
        return DuplicateKey(str(exc))
    if isinstance(exc, sqlite3.OperationalError):
        return StorageUnavailable(str(exc))
    return StorageError(str(exc))


class _Abandoned(Exception):
    """A call whose caller was cancelled before its worker thread began it."""


class _ThreadCall:
    """Whether a call handed to a worker thread began there, or was abandoned first (its
    caller cancelled before the thread ran it); decided once, under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = "waiting"
        self.finished = threading.Event()

    def begin(self) -> bool:
        with self._lock:
            if self._state == "abandoned":
                return False
            self._state = "running"
            return True

    def abandon(self) -> bool:
        """True when the call will never run."""
        with self._lock:
            if self._state == "waiting":
                self._state = "abandoned"
            return self._state == "abandoned"


def _busy(exc: sqlite3.Error) -> bool:
    """Another connection holds the lock: trying again later may work."""
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _placeholders(sql: str) -> str:
    # Queries are written once with the MySQL driver's %s; none of them contains a literal %.
    return sql.replace("%s", "?")


class _Bound(Executor):
    """Runs statements on the connection while the caller holds the lock."""

    dialect = SQLITE_DIALECT

    def __init__(self, owner: SQLiteDatabase) -> None:
        self._owner = owner

    async def execute(self, sql: str, params: Params = ()) -> Written:
        return await self._owner._call(_execute, _placeholders(sql), params)

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._owner._call(_fetch_all, _placeholders(sql), params)


def _execute(conn: sqlite3.Connection, sql: str, params: Params) -> Written:
    cursor = conn.execute(sql, tuple(params))
    return Written(rowcount=cursor.rowcount, lastrowid=cursor.lastrowid)


def _fetch_all(conn: sqlite3.Connection, sql: str, params: Params) -> list[Row]:
    return [tuple(row) for row in conn.execute(sql, tuple(params)).fetchall()]


class SQLiteDatabase(Database):
    dialect = SQLITE_DIALECT

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = trio.Lock()
        self._conn: sqlite3.Connection | None = None
        self._bound = _Bound(self)

    async def open(self) -> None:
        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(
                self._path,
                detect_types=sqlite3.PARSE_DECLTYPES,
                check_same_thread=False,
                isolation_level=None,  # autocommit; transactions are explicit BEGIN/COMMIT
                timeout=BUSY_TIMEOUT_MS / 1000,  # for the set-up below only
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
            # From now on busy is retried by _call, where a cancelled caller can leave.
            conn.execute("PRAGMA busy_timeout=0")
            return conn

        try:
            self._conn = await trio.to_thread.run_sync(connect)
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"cannot open {self._path}: {exc}") from exc

    async def _call(self, fn: Callable[[sqlite3.Connection, str, Params], T], sql: str,
                    params: Params) -> T:
        conn = self._conn
        if conn is None:
            raise StorageUnavailable("the database is closed")
        deadline = trio.current_time() + BUSY_TIMEOUT_MS / 1000
        pause = 0.001
        while True:
            try:
                with timed():
                    return await self._in_thread(conn, fn, sql, params)
            except sqlite3.Error as exc:
                if not _busy(exc) or trio.current_time() >= deadline:
                    raise _translate(exc) from exc
            await trio.sleep(pause)
            pause = min(pause * 2, 0.05)

    @staticmethod
    async def _in_thread(conn: sqlite3.Connection,
                         fn: Callable[[sqlite3.Connection, str, Params], T], sql: str,
                         params: Params) -> T:
        state = _ThreadCall()

        def run() -> T:
            if not state.begin():
                raise _Abandoned  # its caller left before it began: it never runs
            try:
                return fn(conn, sql, params)
            finally:
                state.finished.set()

        try:
            return await trio.to_thread.run_sync(run, abandon_on_cancel=True)
        except trio.Cancelled:
            if state.abandon():
                raise  # cancelled before the thread began: nothing to wait for
            # Stop the statement, and keep the connection (and our lock) until its thread
            # is done with it: the next caller must not share it with a running statement.
            conn.interrupt()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(state.finished.wait)
            raise

    async def execute(self, sql: str, params: Params = ()) -> Written:
        async with self._lock:
            return await self._bound.execute(sql, params)

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        async with self._lock:
            return await self._bound.fetch_all(sql, params)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        async with self._lock:
            await self._bound.execute("BEGIN IMMEDIATE")
            try:
                yield self._bound
            except BaseException:
                await self._end("ROLLBACK", raising=False)
                raise
            await self._end("COMMIT", raising=True)

    async def _end(self, statement: str, *, raising: bool) -> None:
        """COMMIT or ROLLBACK, shielded (a cancelled caller must not leave the outcome
        unknown); when it fails, the shared connection is rolled back, or else reopened,
        so that nobody's next statement runs inside this transaction. Lock held."""
        with trio.CancelScope(shield=True):
            try:
                await self._bound.execute(statement)
            except StorageError:
                await self._out_of_transaction()
                if raising:
                    raise

    async def _out_of_transaction(self) -> None:
        conn = self._conn
        if conn is None or not conn.in_transaction:
            return
        with suppress(sqlite3.Error):
            await trio.to_thread.run_sync(conn.execute, "ROLLBACK")
        if conn.in_transaction:
            self._conn = None
            await trio.to_thread.run_sync(conn.close)
            await self.open()

    async def run_script(self, statements: Sequence[str]) -> None:
        async with self._lock:
            for statement in statements:
                await self._bound.execute(statement)

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            async with self._lock:
                await trio.to_thread.run_sync(conn.close)
