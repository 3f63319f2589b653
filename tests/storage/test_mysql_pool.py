"""The MariaDB backend's connection pool: bounded, self-healing after the server drops its
connections, atomic transactions under errors and cancellation, and URL parsing.

Connections are observed from the server side (information_schema.processlist) through a
separate admin connection that is not in the test database.
"""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import pytest
import trio

import storage.mysql
from storage import (
    DuplicateKey,
    MySQLParams,
    Storage,
    StorageUnavailable,
    open_storage,
)
from tests.conftest import MYSQL_SERVER_URL, mysql_admin, throwaway_mysql_url

pytestmark = pytest.mark.mysql

T0 = datetime(2026, 1, 2, 3, 4, 5)
INSERT_USER = ("INSERT INTO users (username, display_name, password_hash, created_at)"
               " VALUES (%s, 'U', 'h', '2026-01-02 03:04:05')")


async def connection_ids(database: str) -> list[int]:
    """The server's ids of the connections whose current database is `database`."""
    rows = await mysql_admin("SELECT id FROM information_schema.processlist"
                             f" WHERE db = '{database}'")
    return [int(row[0]) for row in rows]


async def wait_for_connections(database: str, count: int) -> None:
    """Wait (up to 3 s) until the server lists `count` connections to `database`."""
    for _ in range(150):
        if len(await connection_ids(database)) == count:
            return
        await trio.sleep(0.02)
    raise AssertionError(f"the server does not list {count} connections to {database}")


async def kill_connections(database: str) -> int:
    """Kill every connection to `database` server-side; wait until the server let them go."""
    ids = await connection_ids(database)
    for connection_id in ids:
        await mysql_admin(f"KILL {connection_id}")
    await wait_for_connections(database, 0)
    return len(ids)


@asynccontextmanager
async def pooled_storage(pool: int) -> AsyncIterator[tuple[Storage, str]]:
    """A fresh database with the schema, opened with a pool of `pool` connections."""
    async with throwaway_mysql_url() as url, open_storage(f"{url}?pool={pool}") as store:
        await store.init_schema()
        yield store, MySQLParams.from_url(url).database


async def fill_pool(store: Storage, pool: int) -> None:
    """Make the pool open all its connections (they stay idle afterwards)."""
    async with trio.open_nursery() as nursery:
        for _ in range(pool):
            nursery.start_soon(store.db.fetch_all, "SELECT SLEEP(0.05)")


async def user_count(store: Storage) -> int:
    row = await store.db.fetch_one("SELECT COUNT(*) FROM users")
    assert row is not None
    return int(row[0])


def assert_no_leaked_sockets() -> None:
    # A socket trio-mysql forgot to close warns when collected; under filterwarnings=error
    # that fails the test that leaked it (here, not some later test).
    gc.collect()


# -- bounded pool -----------------------------------------------------------------------------


async def test_pool_never_opens_more_than_its_size() -> None:
    with trio.fail_after(10):
        async with pooled_storage(pool=3) as (store, database):
            seen: list[int] = []
            done = trio.Event()

            async def watch() -> None:
                while not done.is_set():
                    seen.append(len(await connection_ids(database)))
                    await trio.sleep(0.01)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                async with trio.open_nursery() as queries:
                    for _ in range(20):
                        queries.start_soon(store.db.fetch_all, "SELECT SLEEP(0.1)")
                done.set()
            assert max(seen) == 3
            assert len(await connection_ids(database)) == 3  # kept open for reuse


class StepCounter(trio.abc.Instrument):
    """How many times the scheduler ran one task (each a turn it waited for)."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.steps += 1


async def test_a_statement_on_an_idle_pool_waits_for_one_turn_only() -> None:
    """A statement's only turn is its wait for the answer: a free pool slot and the send
    are taken at once (on a busy chat server each turn is a slice of a lecture's fan-out,
    in the path of every other room's store). A full pool is still waited for."""
    with trio.fail_after(10):
        async with pooled_storage(pool=1) as (store, _):
            await store.db.fetch_all("SELECT 1")  # the connection is open and idle
            counter = StepCounter(trio.lowlevel.current_task())
            trio.lowlevel.add_instrument(counter)
            try:
                await store.db.fetch_all("SELECT 1")
            finally:
                trio.lowlevel.remove_instrument(counter)
            assert counter.steps == 1
            async with trio.open_nursery() as nursery:
                nursery.start_soon(store.db.fetch_all, "SELECT SLEEP(0.2)")
                await trio.sleep(0.05)
                started = trio.current_time()
                assert await store.db.fetch_all("SELECT 2") == [(2,)]
                assert trio.current_time() - started > 0.1  # it waited for the slot


async def test_connection_goes_back_to_the_pool_after_a_duplicate_key() -> None:
    with trio.fail_after(10):
        async with pooled_storage(pool=1) as (store, database):
            await store.create_user("ada", "Ada", "h", T0)
            [before] = await connection_ids(database)
            with pytest.raises(DuplicateKey):
                await store.create_user("ada", "Ada", "h", T0)
            assert await store.get_user_by_username("ada") is not None
            assert await connection_ids(database) == [before]


# -- the server drops the connections ---------------------------------------------------------


async def test_read_after_connections_were_killed_succeeds() -> None:
    with trio.fail_after(10):
        async with pooled_storage(pool=3) as (store, database):
            user = await store.create_user("ada", "Ada", "h", T0)
            await fill_pool(store, 3)
            assert await kill_connections(database) == 3
            assert await store.get_user(user.id) == user
            assert len(await connection_ids(database)) == 1
            assert_no_leaked_sockets()


async def test_write_after_connections_were_killed_recovers_by_the_next_try() -> None:
    with trio.fail_after(10):
        async with pooled_storage(pool=3) as (store, database):
            await fill_pool(store, 3)
            await kill_connections(database)
            try:
                await store.db.execute(INSERT_USER, ("ada",))
            except StorageUnavailable:
                # Not retried: a write may have happened. This one did not: nothing was there
                # to receive it.
                assert await user_count(store) == 0
                await store.db.execute(INSERT_USER, ("ada",))
            assert await user_count(store) == 1
            await store.db.execute(INSERT_USER, ("bob",))
            assert await user_count(store) == 2
            assert_no_leaked_sockets()


async def test_transaction_after_connections_were_killed_recovers_by_the_next_try() -> None:
    with trio.fail_after(10):
        async with pooled_storage(pool=2) as (store, database):
            ada = await store.create_user("ada", "Ada", "h", T0)
            await fill_pool(store, 2)
            await kill_connections(database)
            try:
                await store.create_classroom("c", "d", "CODE", ada, T0)
            except StorageUnavailable:
                await store.create_classroom("c", "d", "CODE", ada, T0)
            assert [m.role for m in await store.list_memberships(ada.id)] == ["instructor"]
            assert_no_leaked_sockets()


async def test_unreachable_server_gives_storage_unavailable_quickly() -> None:
    with trio.fail_after(10):
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match=r"127\.0\.0\.1:1\b"):
            async with open_storage("mysql://root@127.0.0.1:1/classroom"):
                pass
        assert time.monotonic() - started < storage.mysql.CONNECT_TIMEOUT


async def test_missing_database_gives_storage_unavailable() -> None:
    with trio.fail_after(10), pytest.raises(StorageUnavailable):
        base = MYSQL_SERVER_URL.rsplit("/", 1)[0]
        async with open_storage(f"{base}/classroom_no_such_database"):
            pass


# -- transactions -----------------------------------------------------------------------------


async def test_transaction_whose_body_raises_writes_nothing() -> None:
    with trio.fail_after(10):
        async with pooled_storage(pool=1) as (store, _):
            with pytest.raises(RuntimeError, match="boom"):
                async with store.db.transaction() as tx:
                    await tx.execute(INSERT_USER, ("ada",))
                    await tx.execute(INSERT_USER, ("bob",))
                    raise RuntimeError("boom")
            assert await user_count(store) == 0
            await store.db.execute(INSERT_USER, ("cat",))  # the one connection is fine
            assert await user_count(store) == 1


async def test_transaction_cancelled_between_statements_writes_nothing() -> None:
    with trio.fail_after(10):
        async with pooled_storage(pool=1) as (store, _):
            with trio.move_on_after(0.1) as scope:
                async with store.db.transaction() as tx:
                    await tx.execute(INSERT_USER, ("ada",))
                    await trio.sleep_forever()
            assert scope.cancelled_caught
            assert await user_count(store) == 0
            await store.db.execute(INSERT_USER, ("bob",))
            assert await user_count(store) == 1
            assert_no_leaked_sockets()


async def test_transaction_cancelled_inside_a_statement_writes_nothing() -> None:
    with trio.fail_after(10):
        async with pooled_storage(pool=1) as (store, database):
            started = time.monotonic()
            with trio.move_on_after(0.2) as scope:
                async with store.db.transaction() as tx:
                    await tx.execute(INSERT_USER, ("ada",))
                    await tx.fetch_all("SELECT SLEEP(3)")
            assert scope.cancelled_caught
            assert time.monotonic() - started < 2.5  # not waiting for the answer (3 s)
            assert await user_count(store) == 0
            await store.db.execute(INSERT_USER, ("bob",))
            assert_no_leaked_sockets()
            # MariaDB notices the closed socket only when the statement ends; then it rolls
            # back, and the pool's one connection is all that is left.
            await wait_for_connections(database, 1)
            assert await mysql_admin(f"SELECT username FROM {database}.users") == [("bob",)]


async def test_statement_over_the_query_timeout_gives_storage_unavailable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with trio.fail_after(10):
        async with pooled_storage(pool=1) as (store, _):
            monkeypatch.setattr(storage.mysql, "QUERY_TIMEOUT", 0.2)
            with pytest.raises(StorageUnavailable):
                await store.db.fetch_all("SELECT SLEEP(1)")
            with pytest.raises(StorageUnavailable):
                async with store.db.transaction() as tx:
                    await tx.execute(INSERT_USER, ("ada",))
                    await tx.fetch_all("SELECT SLEEP(1)")
            assert await user_count(store) == 0
            assert_no_leaked_sockets()


# -- URLs ---------------------------------------------------------------------------------


def test_from_url_reads_every_part() -> None:
    params = MySQLParams.from_url("mysql://app:s3cr%40t%2Fx@db.example:3307/classroom?pool=4")
    assert params == MySQLParams(host="db.example", port=3307, user="app",
                                 password="s3cr@t/x", database="classroom", pool_size=4)


def test_from_url_defaults() -> None:
    params = MySQLParams.from_url("mysql:///classroom")
    assert params == MySQLParams(host="127.0.0.1", port=3306, user="root", password="",
                                 database="classroom", pool_size=10)
    assert MySQLParams.from_url("mysql://ada@h/db").password == ""


@pytest.mark.parametrize("url", [
    "postgres://root@127.0.0.1/classroom",
    "mysql://root@127.0.0.1",
    "mysql://root@127.0.0.1/",
    "mysql://root@127.0.0.1/db?pool=0",
    "mysql://root@127.0.0.1/db?pool=-1",
    "mysql://root@127.0.0.1/db?pool=ten",
    "mysql://root@127.0.0.1/db?pool=",
    "mysql://root@127.0.0.1/db?timeout=5",
    "mysql://root@127.0.0.1:port/db",
    "mysql://root@127.0.0.1:99999/db",
])
def test_from_url_rejects_bad_urls(url: str) -> None:
    with pytest.raises(ValueError):
        MySQLParams.from_url(url)
