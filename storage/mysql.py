"""The production backend: MySQL/MariaDB through trio-mysql, with a bounded connection pool.

Pool rules:
- at most `size` connections exist; a caller waits up to ACQUIRE_TIMEOUT for one;
- a connection goes back to the pool only after a statement finished cleanly: one that raised,
  timed out or was cancelled mid-protocol is closed, because its wire state is unknown; so is
  one whose COMMIT or ROLLBACK failed (it may still be inside its transaction);
- an idle connection is checked before reuse: one the server closed (restart, KILL, idle
  timeout) has its end of file waiting on the socket and is dropped without a round trip; one
  idle longer than IDLE_PING_AFTER is pinged. So the first write after the server dropped its
  connections goes to a live one;
- when the server went away (restart, network), every idle connection is dropped too, and the
  next caller connects afresh: that is the whole of "reconnect";
- a read that failed on a pooled connection is retried once on a new one (a stale socket after
  a server restart is the usual cause); a write is never retried, since it may have happened;
- errors are told apart by errno: a deadlock or lock wait timeout is `Contention` (the work
  was rolled back: an autocommit statement is retried here once, a transaction by `Storage`),
  a statement the server refused is a plain `StorageError` (a bug: HTTP 500, logged), and
  only a lost or refused connection is `StorageUnavailable` (503, pool dropped).
"""

from __future__ import annotations

import select
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import attrs
import trio
import trio_mysql
import trio_mysql.constants.CLIENT
import trio_mysql.cursors
import trio_mysql.err

from .database import QUERY_TIMEOUT, Database, Dialect, Executor, Params, Row, Written
from .dbsocket import QuickSendSocket
from .errors import Contention, DuplicateKey, StorageError, StorageUnavailable
from .stats import timed

MYSQL_DIALECT: Final = Dialect(
    name="mysql", insert_ignore="INSERT IGNORE", for_update=" FOR UPDATE"
)
DEFAULT_POOL_SIZE: Final = 10
ACQUIRE_TIMEOUT: Final = 10.0
CONNECT_TIMEOUT: Final = 5
ER_DUP_ENTRY: Final = 1062
ER_LOCK_WAIT_TIMEOUT: Final = 1205
ER_LOCK_DEADLOCK: Final = 1213
# Server errors that mean the server or the way to it is unavailable, not that the statement
# is wrong: too many connections, shutdown, network errors, killed, read-only, timeouts.
_OUTAGE_ERRNOS: Final = frozenset({
    1040, 1044, 1045, 1049, 1053, 1152, 1153, 1158, 1159, 1160, 1161, 1203, 1226, 1290,
    1317, 1836, 1927, 1969, 3024,
})
# An idle connection older than this is pinged before reuse (one round trip).
IDLE_PING_AFTER: Final = 30.0


@attrs.frozen
class MySQLParams:
    host: str
    port: int
    user: str
    password: str
    database: str
    pool_size: int = DEFAULT_POOL_SIZE

    @classmethod
    def from_url(cls, url: str) -> MySQLParams:
        """Parse `mysql://user:pass@host:port/db?pool=10`."""
        parts = urlsplit(url)
        if parts.scheme != "mysql" or not parts.path.strip("/"):
            raise ValueError(f"not a mysql://user:pass@host:port/database URL: {url!r}")
        pool = DEFAULT_POOL_SIZE
        for item in filter(None, parts.query.split("&")):
            key, _, value = item.partition("=")
            if key != "pool" or not value.isdigit() or int(value) < 1:
                raise ValueError(f"unknown or bad option in database URL: {item!r}")
            pool = int(value)
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=unquote(parts.username or "root"),
            password=unquote(parts.password or ""),
            database=unquote(parts.path.strip("/")),
            pool_size=pool,
        )


def _errno(exc: BaseException) -> int | None:
    if isinstance(exc, trio_mysql.err.MySQLError) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


def _translate(exc: BaseException) -> StorageError:
    code = _errno(exc)
    message = str(exc.args[1] if isinstance(exc, trio_mysql.err.MySQLError)
                  and len(exc.args) > 1 else exc)
    if code == ER_DUP_ENTRY:
        return DuplicateKey(message)
    if code in (ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT):
        return Contention(f"MySQL error {code}: {message}")
    # 1000-1999 are the server's answers about a statement; 2000 and up are the client's own
    # (connection lost, server gone); 0 is a protocol or socket failure.
    if code is not None and 1000 <= code < 2000 and code not in _OUTAGE_ERRNOS:
        return StorageError(f"MySQL error {code}: {message}")
    return StorageUnavailable(f"database unavailable: {exc}")


# What a dead or unreachable server looks like from the driver.
_CONNECTION_ERRORS: Final = (
    trio_mysql.err.Error, OSError, trio.BrokenResourceError, trio.ClosedResourceError,
    trio.TooSlowError, EOFError,
)


class _QuietCursor(trio_mysql.cursors.Cursor):  # type: ignore[misc]
    """A cursor that never fetches the server's warnings.

    Server notes (e.g. INSERT IGNORE of a duplicate, CREATE TABLE IF NOT EXISTS) are expected
    outcomes here, not errors. trio-mysql would fetch them with an extra SHOW WARNINGS and
    raise them through `warnings.warn`; silencing that with `warnings.catch_warnings()` around
    an await is unsafe, since concurrent tasks swap the process-wide filters under each other
    (the warning then escapes as a driver exception, and an "ignore" filter stays behind)."""

    async def _show_warnings(self) -> None:
        return


class _Connection(Executor):
    dialect = MYSQL_DIALECT

    def __init__(self, conn: Any, stream: trio.SocketStream) -> None:
        self.conn = conn
        self._stream = stream
        self.closed = False
        self.idle_since = 0.0

    def close(self) -> None:
        """Close the socket now, without the QUIT message.

        trio-mysql's own close() calls a close() that trio's SocketStream does not have, and
        swallows the error, leaking the socket; and when a statement fails or is cancelled
        mid-read it does that and forgets the socket (`_sock = None`). So close the socket we
        opened ourselves: a leaked one keeps the server-side session, with any open
        transaction and its row locks, alive until garbage collection."""
        self.conn._sock = None
        self.conn._closed = True
        self.closed = True
        self._stream.socket.close()

    async def check(self) -> bool:
        """Whether this idle connection still works. Nothing may arrive on an idle
        connection: a readable socket means the server closed it (or said why it did)."""
        try:
            readable, _, _ = select.select([self._stream.socket.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        if readable:
            return False
        if trio.current_time() - self.idle_since < IDLE_PING_AFTER:
            return True
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                await self.conn.ping(reconnect=False)
        except _CONNECTION_ERRORS:
            return False
        return True

    async def execute(self, sql: str, params: Params = ()) -> Written:
        try:
            with timed(), trio.fail_after(QUERY_TIMEOUT):
                async with self.conn.cursor() as cursor:
                    count = await cursor.execute(sql, tuple(params))
                    return Written(rowcount=count, lastrowid=cursor.lastrowid)
        except _CONNECTION_ERRORS as exc:
            raise _translate(exc) from exc

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        try:
            with timed(), trio.fail_after(QUERY_TIMEOUT):
                async with self.conn.cursor() as cursor:
                    await cursor.execute(sql, tuple(params))
                    return [tuple(row) for row in await cursor.fetchall()]
        except _CONNECTION_ERRORS as exc:
            raise _translate(exc) from exc

    async def execute_together(self, statements: Sequence[tuple[str, Params]]
                               ) -> list[Written]:
        """BEGIN, the statements and COMMIT in one query, so one round trip; each
        statement's outcome. The server stops at the first statement that fails, inside the
        transaction: the caller rolls back (`MySQLDatabase.execute_together`)."""
        sql = ";\n".join(["BEGIN", *(statement for statement, _ in statements), "COMMIT"])
        params = tuple(value for _, values in statements for value in values)
        try:
            with timed(), trio.fail_after(QUERY_TIMEOUT):
                async with self.conn.cursor() as cursor:
                    await cursor.execute(sql, params)  # BEGIN's answer
                    written = []
                    for _ in statements:
                        await cursor.nextset()
                        written.append(Written(rowcount=cursor.rowcount,
                                               lastrowid=cursor.lastrowid))
                    await cursor.nextset()  # COMMIT's answer
                    return written
        except _CONNECTION_ERRORS as exc:
            raise _translate(exc) from exc


class MySQLDatabase(Database):
    dialect = MYSQL_DIALECT

    def __init__(self, params: MySQLParams) -> None:
        self.params = params
        self._slots = trio.Semaphore(params.pool_size)
        self._idle: list[_Connection] = []
        self._closed = False

    def pool_use(self) -> tuple[int, int]:
        """Connections leased now, and the most that may be."""
        return self.params.pool_size - self._slots.value, self.params.pool_size

    async def open(self) -> None:
        """Check the server answers now, so start-up fails early with a clear message."""
        await self.fetch_all("SELECT 1")

    async def _connect(self) -> _Connection:
        p = self.params
        conn = trio_mysql.connect(
            host=p.host, port=p.port, user=p.user, password=p.password, database=p.database,
            autocommit=True, use_unicode=True, charset="utf8mb4",
            connect_timeout=CONNECT_TIMEOUT, cursorclass=_QuietCursor,
            # An UPDATE's rowcount counts the rows it matched, as SQLite's does, not only those
            # it changed (claim_room of a room the server already holds must say True).
            # Several statements in one query: `execute_together` sends a transaction in one
            # round trip. Every value still goes through the driver's escaping (%s), never
            # into the SQL text, so this adds no way in for a value.
            client_flag=(trio_mysql.constants.CLIENT.FOUND_ROWS
                         | trio_mysql.constants.CLIENT.MULTI_STATEMENTS),
        )
        stream = None
        try:
            with trio.fail_after(CONNECT_TIMEOUT + 1):
                stream = trio.SocketStream(QuickSendSocket(
                    await trio.open_tcp_stream(p.host, p.port)))
                stream.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                await conn.connect(sock=stream)
        except BaseException as exc:
            if stream is not None:
                stream.socket.close()  # a half-open handshake leaves its socket behind
            if not isinstance(exc, _CONNECTION_ERRORS):
                raise
            message = f"cannot connect to MySQL at {p.host}:{p.port}: {exc}"
            raise StorageUnavailable(message) from exc
        return _Connection(conn, stream)

    def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    @asynccontextmanager
    async def _lease(self, *, fresh: bool = False) -> AsyncIterator[_Connection]:
        if self._closed:
            raise StorageUnavailable("the database is closed")
        if self._slots.value:
            # Free (so nobody waits for one): taken without the turn of the scheduler that
            # `acquire` gives up even then. On a busy chat server a turn is a slice of a
            # lecture's fan-out, in the path of every other room's store.
            self._slots.acquire_nowait()
        else:
            try:
                with trio.fail_after(ACQUIRE_TIMEOUT):
                    await self._slots.acquire()
            except trio.TooSlowError as exc:
                raise StorageUnavailable("all database connections are busy") from exc
        try:
            if fresh:
                self._drop_idle()
            connection = await self._reusable() or await self._connect()
            try:
                yield connection
            except StorageError as exc:
                if isinstance(exc, StorageUnavailable):
                    self._drop_idle()
                    connection.close()
                else:
                    self._give_back(connection)  # the statement failed, the wire is fine
                raise
            except BaseException:
                connection.close()
                raise
            else:
                self._give_back(connection)
        finally:
            self._slots.release()

    async def _reusable(self) -> _Connection | None:
        """An idle connection that still works; dead ones are closed on the way."""
        while self._idle:
            connection = self._idle.pop()
            if await connection.check():
                return connection
            connection.close()
        return None

    def _give_back(self, connection: _Connection) -> None:
        if not connection.closed:  # closed: its COMMIT or ROLLBACK failed
            connection.idle_since = trio.current_time()
            self._idle.append(connection)

    async def execute(self, sql: str, params: Params = ()) -> Written:
        try:
            async with self._lease() as connection:
                return await connection.execute(sql, params)
        except Contention:
            pass  # rolled back by the server: running it again is safe
        async with self._lease() as connection:
            return await connection.execute(sql, params)

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        try:
            async with self._lease() as connection:
                return await connection.fetch_all(sql, params)
        except StorageUnavailable:
            pass
        async with self._lease(fresh=True) as connection:
            return await connection.fetch_all(sql, params)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        async with self._lease() as connection:
            await connection.execute("BEGIN")
            try:
                yield connection
            except BaseException:
                await self._end(connection, "ROLLBACK", raising=False)
                raise
            await self._end(connection, "COMMIT", raising=True)

    async def execute_together(self, statements: Sequence[tuple[str, Params]]
                               ) -> list[Written]:
        async with self._lease() as connection:
            try:
                return await connection.execute_together(statements)
            except StorageError as exc:
                if not isinstance(exc, StorageUnavailable):
                    # A statement was refused (a duplicate key, a deadlock): the rest were
                    # not run, and the transaction is still open.
                    await self._end(connection, "ROLLBACK", raising=False)
                raise

    async def _end(self, connection: _Connection, statement: str, *, raising: bool) -> None:
        """COMMIT or ROLLBACK, shielded: a caller cancelled now must not leave the outcome
        unknown. When it fails the connection is closed, never pooled: it may still be
        inside the transaction (the server rolls back a closed connection's work)."""
        with trio.CancelScope(shield=True):
            try:
                await connection.execute(statement)
            except StorageError:
                connection.close()
                if raising:
                    raise

    async def run_script(self, statements: Sequence[str]) -> None:
        async with self._lease() as connection:
            for statement in statements:
                await connection.execute(statement)

    async def aclose(self) -> None:
        self._closed = True
        self._drop_idle()
