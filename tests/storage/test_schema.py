"""The two DDL files agree (checked on real databases, not by reading the text), and schema
creation is idempotent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

import attrs
import pytest
import trio

from storage import SCHEMA_VERSION, Storage, open_storage
from tests.conftest import throwaway_mysql_url

T0 = datetime(2026, 1, 2, 3, 4, 5, 6)
TABLES = {
    "schema_version", "users", "auth_sessions", "login_failures", "classrooms", "memberships",
    "posts", "post_comments", "tags", "post_tags", "rooms", "room_events", "room_bans",
    "attendance", "room_state", "cache_changes", "idempotency_keys", "chat_servers",
    "open_connections",
}


@attrs.frozen
class Table:
    columns: tuple[str, ...]  # in declaration order
    not_null: frozenset[str]
    types: dict[str, str]  # normalized: dialect spellings of one type compare equal
    primary_key: tuple[str, ...]
    unique: frozenset[tuple[str, ...]]  # unique keys other than the primary key
    indexes: dict[str, tuple[str, ...]]  # non-unique indexes by name
    foreign_keys: frozenset[tuple[tuple[str, ...], str, tuple[str, ...], str]]


def normalize_type(declared: str) -> str:
    """`BIGINT`, `bigint(20)` -> `bigint`; `DATETIME(6)` -> `datetime`; SQLite's rowid
    `INTEGER` -> `bigint`; lengths of character types are kept."""
    declared = declared.lower()
    base = declared.split("(")[0]
    if base in ("integer", "bigint"):
        return "bigint"
    if base in ("tinyint", "int", "datetime"):
        return base
    return declared


def normalize_rule(rule: str) -> str:
    # Both mean "refuse while rows refer to it" here (foreign keys are checked immediately).
    return "RESTRICT" if rule.upper() in ("NO ACTION", "RESTRICT") else rule.upper()


async def sqlite_tables(storage: Storage) -> dict[str, Table]:
    db = storage.db
    names = [r[0] for r in await db.fetch_all(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    tables = {}
    for name in names:
        info = await db.fetch_all(f"PRAGMA table_info({name})")  # cid, name, type, notnull,
        # default, pk (position in the primary key, 0 when not part of it)
        unique, indexes = set(), {}
        for _, index, is_unique, origin, _ in await db.fetch_all(f"PRAGMA index_list({name})"):
            columns = tuple(r[2] for r in await db.fetch_all(f"PRAGMA index_info({index})"))
            if origin == "pk":
                continue
            if is_unique:
                unique.add(columns)
            else:
                indexes[index] = columns
        foreign: dict[int, list[tuple[str, str, str, str]]] = {}
        for fk_id, _, ref_table, column, ref_column, _, on_delete, _ in await db.fetch_all(
                f"PRAGMA foreign_key_list({name})"):
            foreign.setdefault(fk_id, []).append((column, ref_table, ref_column, on_delete))
        tables[name] = Table(
            columns=tuple(r[1] for r in info),
            not_null=frozenset(r[1] for r in info if r[3] or r[5]),
            types={r[1]: normalize_type(r[2]) for r in info},
            primary_key=tuple(r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]),
            unique=frozenset(unique),
            indexes=indexes,
            foreign_keys=frozenset(
                (tuple(p[0] for p in parts), parts[0][1], tuple(p[2] for p in parts),
                 normalize_rule(parts[0][3])) for parts in foreign.values()),
        )
    return tables


async def mysql_tables(storage: Storage) -> dict[str, Table]:
    db = storage.db
    columns = await db.fetch_all(
        "SELECT table_name, column_name, is_nullable, column_type"
        " FROM information_schema.columns WHERE table_schema = DATABASE()"
        " ORDER BY table_name, ordinal_position")
    keys = await db.fetch_all(
        "SELECT table_name, index_name, non_unique, column_name"
        " FROM information_schema.statistics WHERE table_schema = DATABASE()"
        " ORDER BY table_name, index_name, seq_in_index")
    references = await db.fetch_all(
        "SELECT k.table_name, k.constraint_name, k.column_name, k.referenced_table_name,"
        " k.referenced_column_name, r.delete_rule"
        " FROM information_schema.key_column_usage k"
        " JOIN information_schema.referential_constraints r"
        " ON r.constraint_schema = k.constraint_schema AND r.constraint_name = k.constraint_name"
        " WHERE k.table_schema = DATABASE() AND k.referenced_table_name IS NOT NULL"
        " ORDER BY k.table_name, k.constraint_name, k.ordinal_position")
    by_table: dict[str, list[tuple[str, str, str]]] = {}
    for table, column, nullable, column_type in columns:
        by_table.setdefault(table, []).append((column, nullable, column_type))
    index_columns: dict[tuple[str, str], tuple[bool, list[str]]] = {}
    for table, index, non_unique, column in keys:
        index_columns.setdefault((table, index), (not non_unique, []))[1].append(column)
    foreign: dict[tuple[str, str], list[tuple[str, str, str, str]]] = {}
    for table, constraint, column, ref_table, ref_column, rule in references:
        foreign.setdefault((table, constraint), []).append((column, ref_table, ref_column, rule))
    constraint_names = {constraint for _, constraint in foreign}
    tables = {}
    for table, cols in by_table.items():
        own = {index: (is_unique, tuple(c)) for (t, index), (is_unique, c)
               in index_columns.items() if t == table}
        tables[table] = Table(
            columns=tuple(c[0] for c in cols),
            not_null=frozenset(c[0] for c in cols if c[1] == "NO"),
            types={c[0]: normalize_type(c[2]) for c in cols},
            primary_key=own["PRIMARY"][1],
            unique=frozenset(c for index, (u, c) in own.items() if u and index != "PRIMARY"),
            # InnoDB adds an index named after a foreign key that has none to use: not ours.
            indexes={index: c for index, (u, c) in own.items()
                     if not u and index not in constraint_names},
            foreign_keys=frozenset(
                (tuple(p[0] for p in parts), parts[0][1], tuple(p[2] for p in parts),
                 normalize_rule(parts[0][3]))
                for (t, _), parts in foreign.items() if t == table),
        )
    return tables


@asynccontextmanager
async def both_schemas(tmp_path: Path) -> AsyncIterator[tuple[dict[str, Table],
                                                              dict[str, Table]]]:
    """The tables as SQLite and MariaDB really created them from the two DDL files."""
    async with throwaway_mysql_url() as mysql_url, open_storage(mysql_url) as mysql, \
            open_storage(f"sqlite:///{tmp_path / 'schema.db'}") as sqlite:
        await mysql.init_schema()
        await sqlite.init_schema()
        yield await sqlite_tables(sqlite), await mysql_tables(mysql)


@pytest.mark.mysql
async def test_both_schemas_define_the_same_tables_and_columns(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with both_schemas(tmp_path) as (sqlite, mysql):
            assert set(sqlite) == set(mysql) == TABLES
            for name in sqlite:
                assert sqlite[name].columns == mysql[name].columns, name


@pytest.mark.mysql
async def test_both_schemas_agree_on_types_and_nullability(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with both_schemas(tmp_path) as (sqlite, mysql):
            for name in sqlite:
                assert sqlite[name].types == mysql[name].types, name
                assert sqlite[name].not_null == mysql[name].not_null, name


@pytest.mark.mysql
async def test_both_schemas_have_the_same_keys_and_indexes(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with both_schemas(tmp_path) as (sqlite, mysql):
            for name in sqlite:
                assert sqlite[name].primary_key == mysql[name].primary_key, name
                assert sqlite[name].unique == mysql[name].unique, name
                assert sqlite[name].indexes == mysql[name].indexes, name


@pytest.mark.mysql
async def test_both_schemas_have_the_same_foreign_keys(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with both_schemas(tmp_path) as (sqlite, mysql):
            for name in sqlite:
                assert sqlite[name].foreign_keys == mysql[name].foreign_keys, name
            assert (("user_id",), "users", ("id",), "CASCADE") in sqlite["memberships"] \
                .foreign_keys


@pytest.mark.mysql
async def test_mysql_tables_are_innodb_utf8mb4_bin() -> None:
    with trio.fail_after(10):
        async with throwaway_mysql_url() as url, open_storage(url) as storage:
            await storage.init_schema()
            tables = await storage.db.fetch_all(
                "SELECT table_name, engine, table_collation FROM information_schema.tables"
                " WHERE table_schema = DATABASE()")
            assert {name for name, _, _ in tables} == TABLES
            assert {(engine, collation) for _, engine, collation in tables} == {
                ("InnoDB", "utf8mb4_bin")}
            charsets = await storage.db.fetch_all(
                "SELECT DISTINCT character_set_name, collation_name FROM information_schema.columns"
                " WHERE table_schema = DATABASE() AND character_set_name IS NOT NULL")
            assert charsets == [("utf8mb4", "utf8mb4_bin")]


async def test_schema_version_is_zero_on_an_empty_database(db_url: str) -> None:
    with trio.fail_after(10):
        async with open_storage(db_url) as storage:
            assert await storage.schema_version() == 0


async def test_init_schema_is_idempotent_and_keeps_data(db_url: str) -> None:
    with trio.fail_after(10):
        async with open_storage(db_url) as storage:
            assert await storage.init_schema() == SCHEMA_VERSION
            user = await storage.create_user("ada", "Ada", "hash", T0)
            assert await storage.init_schema() == SCHEMA_VERSION
            assert await storage.schema_version() == SCHEMA_VERSION
            assert await storage.get_user(user.id) == user
            row = await storage.db.fetch_one("SELECT COUNT(*) FROM schema_version")
            assert row is not None
            assert row[0] == 1


async def test_init_schema_from_two_connections_at_once(db_url: str) -> None:
    # "from several processes at once": two app servers starting together.
    with trio.fail_after(10):
        async with open_storage(db_url) as one, open_storage(db_url) as two:
            versions = []

            async def init(storage: Storage) -> None:
                versions.append(await storage.init_schema())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(init, one)
                nursery.start_soon(init, two)
            assert versions == [SCHEMA_VERSION, SCHEMA_VERSION]
            user = await one.create_user("ada", "Ada", "hash", T0)
            assert await two.get_user(user.id) == user
