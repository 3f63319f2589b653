"""The database's hiccups are not outages: a deadlock is retried, a refused statement is a
bug (500) rather than an outage (503), connections the server dropped are not handed out, a
failed COMMIT leaves no connection inside its transaction, and a cancelled SQLite call does
not sit out another process's write lock."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import trio
import trio_mysql

import storage.mysql
from classroom.errors import Internal, Unavailable, translate_storage_errors
from storage import (
    Contention,
    DuplicateKey,
    MySQLParams,
    Storage,
    StorageError,
    StorageUnavailable,
    open_storage,
)
from storage.sqlite import BUSY_TIMEOUT_MS
from storage.store import _retried
from tests.conftest import MYSQL_SERVER_URL
from tests.storage.test_mysql_pool import (
    INSERT_USER,
    assert_no_leaked_sockets,
    connection_ids,
    fill_pool,
    kill_connections,
    pooled_storage,
    user_count,
)

T0 = datetime(2026, 1, 2, 3, 4, 5)


@pytest.mark.parametrize(("error", "kind"), [
    (trio_mysql.err.OperationalError(1213, "Deadlock found"), Contention),
    (trio_mysql.err.OperationalError(1205, "Lock wait timeout exceeded"), Contention),
    (trio_mysql.err.IntegrityError(1062, "Duplicate entry"), DuplicateKey),
    (trio_mysql.err.OperationalError(1054, "Unknown column"), StorageError),
    (trio_mysql.err.ProgrammingError(1064, "You have an error in your SQL syntax"),
     StorageError),
    (trio_mysql.err.IntegrityError(1452, "foreign key constraint fails"), StorageError),
    (trio_mysql.err.OperationalError(2013, "Lost connection"), StorageUnavailable),
    (trio_mysql.err.OperationalError(1927, "Connection was killed"), StorageUnavailable),
    (trio_mysql.err.OperationalError(1040, "Too many connections"), StorageUnavailable),
    (trio_mysql.err.InterfaceError(0, ""), StorageUnavailable),
    (OSError("reset"), StorageUnavailable),
])
def test_mysql_errors_are_told_apart_by_errno(error: BaseException,
                                              kind: type[StorageError]) -> None:
    assert type(storage.mysql._translate(error)) is kind


async def test_a_contended_write_is_run_once_more_then_given_up() -> None:
    runs: list[int] = []

    @_retried
    async def write(fail_times: int) -> int:
        runs.append(1)
        if len(runs) <= fail_times:
            raise Contention("deadlock")
        return len(runs)

    assert await write(1) == 2
    runs.clear()
    with pytest.raises(Contention):
        await write(2)
    assert len(runs) == 2


@pytest.mark.mysql
async def test_a_statement_the_server_refuses_is_a_bug_not_an_outage(
        caplog: pytest.LogCaptureFixture) -> None:
    with trio.fail_after(10):
        async with pooled_storage(pool=2) as (store, database):
            await fill_pool(store, 2)
            before = sorted(await connection_ids(database))
            with pytest.raises(StorageError) as refused:
                await store.db.execute("UPDATE users SET no_such_column = 1")  # errno 1054
            assert not isinstance(refused.value, StorageUnavailable)
            # Not an outage: the pool was not emptied.
            assert sorted(await connection_ids(database)) == before

            @translate_storage_errors
            async def buggy() -> None:
                await store.db.execute("SELECT no_such_column FROM users")

            with caplog.at_level(logging.ERROR, logger="classroom.errors"), \
                    pytest.raises(Internal) as internal:
                await buggy()
            assert internal.value.status == 500
            assert "refused a statement" in caplog.text


@asynccontextmanager
async def raw_connection(database: str) -> AsyncIterator[Any]:
    """A driver connection of its own to `database`, outside the storage's pool: another
    process's transaction, or an observer of the server's lock table."""
    p = MySQLParams.from_url(MYSQL_SERVER_URL)
    conn = trio_mysql.connect(host=p.host, port=p.port, user=p.user, password=p.password,
                              database=database, autocommit=True, connect_timeout=3)
    await conn.connect()
    try:
        yield conn
    finally:
        await conn.aclose()


async def run(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    async with conn.cursor() as cursor:
        await cursor.execute(sql, params)
        return [tuple(row) for row in await cursor.fetchall()]


async def next_lock_wait(observer: Any, database: str, after: int | None) -> int:
    """Wait until a transaction on `database` other than `after` waits for a row lock; its
    id. A transaction run again after a lock wait timeout is a new one with a new id."""
    while True:
        rows = await run(observer, "SELECT t.trx_id FROM information_schema.innodb_trx t"
                         " JOIN information_schema.processlist p"
                         " ON p.id = t.trx_mysql_thread_id"
                         " WHERE t.trx_state = 'LOCK WAIT' AND p.db = %s", (database,))
        waiting = [int(row[0]) for row in rows if int(row[0]) != after]
        if waiting:
            return waiting[0]
        # The server refreshes innodb_trx only when it was not read for 0.1 s: faster polls
        # would read the same stale copy for ever.
        await trio.sleep(0.25)


async def contended_user(store: Storage, database: str, lock_wait_timeout: int) -> int:
    """A user whose row the test will lock, on a pool of one connection whose lock waits
    give up after `lock_wait_timeout` seconds (1205) instead of the server's 50."""
    user = await store.create_user("ada", "Ada", "old", T0)
    # The session variable stays with the pool's only connection for the whole test.
    await store.db.execute(f"SET SESSION innodb_lock_wait_timeout = {lock_wait_timeout}")
    assert len(await connection_ids(database)) == 1
    return int(user.id)


@pytest.mark.mysql
async def test_a_transaction_that_timed_out_on_a_row_lock_is_run_again_and_succeeds() -> None:
    with trio.fail_after(30):
        async with pooled_storage(pool=1) as (store, database):
            user_id = await contended_user(store, database, lock_wait_timeout=2)
            async with raw_connection(database) as holder, \
                    raw_connection(database) as observer, trio.open_nursery() as nursery:
                await run(holder, "BEGIN")
                await run(holder, "SELECT id FROM users WHERE id = %s FOR UPDATE", (user_id,))
                nursery.start_soon(store.change_password, user_id, "new", None)
                first = await next_lock_wait(observer, database, None)
                # The first run gives up with 1205; the run after it waits anew: let it in.
                await next_lock_wait(observer, database, first)
                await run(holder, "COMMIT")
            rows = await store.db.fetch_all("SELECT password_hash FROM users WHERE id = %s",
                                            (user_id,))
            assert rows == [("new",)]


@pytest.mark.mysql
async def test_a_second_lock_wait_timeout_is_contention_and_keeps_the_pool() -> None:
    with trio.fail_after(30):
        async with pooled_storage(pool=1) as (store, database):
            user_id = await contended_user(store, database, lock_wait_timeout=1)
            before = await connection_ids(database)

            @translate_storage_errors
            async def change_password() -> None:
                await store.change_password(user_id, "new", None)

            async with raw_connection(database) as holder:
                await run(holder, "BEGIN")
                await run(holder, "SELECT id FROM users WHERE id = %s FOR UPDATE", (user_id,))
                with pytest.raises(Contention):
                    await store.change_password(user_id, "new", None)
                # Busy rows, not an outage: the caller is told to retry in a second.
                with pytest.raises(Unavailable) as busy:
                    await change_password()
                assert busy.value.retry_after == 1
                await run(holder, "ROLLBACK")
            # The connection went back to the pool, rolled back: nothing was written, and the
            # next call reuses it rather than reconnecting.
            assert await connection_ids(database) == before
            rows = await store.db.fetch_all("SELECT password_hash FROM users WHERE id = %s",
                                            (user_id,))
            assert rows == [("old",)]
            assert await connection_ids(database) == before


@pytest.mark.mysql
async def test_the_first_write_after_the_server_dropped_every_connection_succeeds() -> None:
    with trio.fail_after(10):
        async with pooled_storage(pool=3) as (store, database):
            await fill_pool(store, 3)
            assert await kill_connections(database) == 3
            await store.db.execute(INSERT_USER, ("ada",))  # no StorageUnavailable
            assert await user_count(store) == 1
            async with store.db.transaction() as tx:
                await tx.execute(INSERT_USER, ("bob",))
            assert await user_count(store) == 2
            assert_no_leaked_sockets()


@pytest.mark.mysql
async def test_a_connection_whose_rollback_failed_is_not_pooled() -> None:
    with trio.fail_after(10):
        async with pooled_storage(pool=1) as (store, database):
            with pytest.raises(StorageError):
                async with store.db.transaction() as tx:
                    await tx.execute(INSERT_USER, ("ada",))
                    await kill_connections(database)  # the ROLLBACK will fail
                    raise StorageError("the body failed")
            await store.db.execute(INSERT_USER, ("bob",))
            assert await user_count(store) == 1
            assert_no_leaked_sockets()


async def test_sqlite_is_never_left_inside_a_transaction_whose_commit_failed(
        tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_storage(f"sqlite:///{tmp_path / 'c.db'}") as store:
            await store.init_schema()
            with pytest.raises(StorageError):
                async with store.db.transaction() as tx:
                    # Checked at COMMIT: it fails, and SQLite keeps the transaction open.
                    await tx.execute("PRAGMA defer_foreign_keys = ON")
                    await tx.execute("INSERT INTO classrooms (name, description, join_code,"
                                     " instructor_id, created_at) VALUES"
                                     " ('c', '', 'X', 999, '2026-01-01 00:00:00')")
            ada = await store.create_user("ada", "Ada", "h", T0)
            classroom = await store.create_classroom("c", "", "CODE", ada, T0)  # BEGIN works
            async with open_storage(f"sqlite:///{tmp_path / 'c.db'}") as other:
                # Committed for real: another connection sees it.
                assert await other.get_classroom(classroom.id) is not None
                assert await other.get_user(ada.id) == ada


async def test_a_cancelled_sqlite_call_does_not_wait_out_another_process_lock(
        tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    async with open_storage(f"sqlite:///{path}") as store:
        await store.init_schema()
        holder = sqlite3.connect(path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            # Bounded by the busy timeout (10 s), not by any tight figure: a call that
            # waited it out would miss this deadline.
            with trio.fail_after(BUSY_TIMEOUT_MS / 2000):
                with trio.move_on_after(0.2) as waited:
                    await store.create_user("ada", "Ada", "h", T0)
                assert waited.cancelled_caught
            holder.execute("ROLLBACK")
        finally:
            holder.close()
        with trio.fail_after(10):
            await store.create_user("ada", "Ada", "h", T0)  # the connection still works


async def test_a_sqlite_write_waits_for_another_process_lock(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    async with open_storage(f"sqlite:///{path}") as store:
        await store.init_schema()
        holder = sqlite3.connect(path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(store.create_user, "ada", "Ada", "h", T0)
                    await trio.sleep(0.2)  # busy meanwhile: retried, not refused
                    holder.execute("COMMIT")
        finally:
            holder.close()
        assert await store.get_user_by_username("ada") is not None


async def test_sqlite_calls_cancelled_at_any_moment_never_hang(tmp_path: Path) -> None:
    # The caller is cancelled while it takes the connection's lock (trio's uncontended
    # acquire still yields, shielded), so the cancellation lands when the worker thread was
    # asked for but has not begun: waiting for that statement to finish would wait forever
    # (it hung the cache's follower). trio runs the two tasks in either order, so about half
    # of the rounds hit that moment.
    async with open_storage(f"sqlite:///{tmp_path / 'c.db'}") as store:
        await store.init_schema()
        with trio.fail_after(30):
            for _ in range(40):
                scope = trio.CancelScope()

                async def query(scope: trio.CancelScope = scope) -> None:
                    with scope:
                        await store.db.fetch_all("SELECT COUNT(*) FROM users")

                async def cancel(scope: trio.CancelScope = scope) -> None:
                    scope.cancel()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(query)
                    nursery.start_soon(cancel)
            assert await store.db.fetch_all("SELECT COUNT(*) FROM users") == [(0,)]
