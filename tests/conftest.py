"""Shared test helpers: the database backends every storage-using test runs on.

SQLite always runs. MariaDB runs when it answers at CLASSROOM_TEST_MYSQL (default
mysql://root@127.0.0.1:3306/test); each test gets its own throwaway database. Under CI=true a
missing MariaDB fails the run instead of skipping: CI must never pass by testing less.
"""

from __future__ import annotations

import os
import secrets
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio_mysql
import trio_mysql.err

from storage import MySQLParams, Storage, open_storage

MYSQL_SERVER_URL = os.environ.get("CLASSROOM_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


async def mysql_admin(sql: str) -> list[tuple[Any, ...]]:
    """Run one statement on the test server, outside any test database, on a connection of
    its own; its rows (if any)."""
    p = MySQLParams.from_url(MYSQL_SERVER_URL)
    with trio.fail_after(10):
        conn = trio_mysql.connect(host=p.host, port=p.port, user=p.user, password=p.password,
                                  autocommit=True, use_unicode=True, connect_timeout=3)
        await conn.connect()
        try:
            with warnings.catch_warnings():
                # DROP DATABASE IF EXISTS on a missing one is a server note, raised as a warning.
                warnings.simplefilter("ignore", trio_mysql.err.Warning)
                async with conn.cursor() as cursor:
                    await cursor.execute(sql)
                    return [tuple(row) for row in await cursor.fetchall()]
        finally:
            await conn.aclose()


async def mysql_available() -> bool:
    try:
        await mysql_admin("SELECT 1")
    except (OSError, trio_mysql.err.Error, trio.TooSlowError):
        return False
    return True


def require_mysql_or_skip(available: bool) -> None:
    if available:
        return
    if IN_CI:
        pytest.fail(f"MariaDB is not reachable at {MYSQL_SERVER_URL} (CI=true: not skipping)")
    pytest.skip(f"MariaDB is not reachable at {MYSQL_SERVER_URL}")


@asynccontextmanager
async def throwaway_mysql_url() -> AsyncIterator[str]:
    """A new empty database on the test server, dropped afterwards."""
    require_mysql_or_skip(await mysql_available())
    name = f"classroom_t_{secrets.token_hex(6)}"
    await mysql_admin(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    base = MYSQL_SERVER_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with trio.CancelScope(shield=True):
            await mysql_admin(f"DROP DATABASE IF EXISTS {name}")


@asynccontextmanager
async def database_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'classroom.db'}"
    else:
        async with throwaway_mysql_url() as url:
            yield url


# The marker is on the parameter, so `-m "not mysql"` deselects the MariaDB half when tests
# are collected (a marker applied inside the fixture comes too late for -m).
@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.param


@pytest.fixture
async def db_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database of each backend (schema not created)."""
    async with database_url(backend, tmp_path) as url:
        yield url


@pytest.fixture
async def storage(db_url: str) -> AsyncIterator[Storage]:
    """A fresh database of each backend with the schema created."""
    async with open_storage(db_url) as store:
        await store.init_schema()
        yield store
