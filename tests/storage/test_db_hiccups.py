"""The database's hiccups are not outages: a deadlock is retried, a refused statement is a
bug (500) rather than an outage (503), connections the server dropped are not handed out, a
failed COMMIT leaves no connection inside its transaction, and a cancelled SQLite call does
not sit out another process's write lock."""

from __future__ import annotations

import logging
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest
import trio
import trio_mysql

import storage.mysql
from classroom.errors import Internal, translate_storage_errors
from storage import (
    Contention,
    DuplicateKey,
    StorageError,
    StorageUnavailable,
    open_storage,
)
from storage.sqlite import BUSY_TIMEOUT_MS
from storage.store import _retried
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
