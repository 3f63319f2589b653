"""Real schools upgrade: a database created by every released schema version, holding data,
is upgraded by `init_schema` to exactly the schema a new database gets, with its data kept.

`old_schemas/vN_{mysql,sqlite}.sql` are the schema files as version N released them (never
edited); when a step is added to `storage/migrations.py`, the schema files of the version
before it are copied here first and `fill_version` learns to fill them.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
import trio

from storage import SCHEMA_VERSION, Storage, open_storage
from storage.database import split_script
from storage.migrations import STEPS
from tests.conftest import throwaway_mysql_url
from tests.storage.test_schema import mysql_tables, sqlite_tables

T0 = datetime(2026, 1, 2, 3, 4, 5, 6)
OLD_SCHEMAS = Path(__file__).parent / "old_schemas"
RELEASED = sorted({1} | {step.version - 1 for step in STEPS})


async def create_version(storage: Storage, version: int) -> None:
    name = f"v{version}_{'mysql' if storage.backend == 'mysql' else 'sqlite'}.sql"
    await storage.db.run_script(split_script((OLD_SCHEMAS / name).read_text(encoding="utf-8")))
    await storage.db.execute("INSERT INTO schema_version (id, version) VALUES (1, %s)",
                             (version,))


async def fill_version_1(storage: Storage) -> None:
    """Rows in every table of version 1, written with that version's columns."""
    db = storage.db
    await db.execute("INSERT INTO users (id, username, display_name, password_hash, created_at)"
                     " VALUES (1, 'turing', 'Prof Turing', 'h', %s),"
                     " (2, 'ada', 'Ada', 'h', %s)", (T0, T0))
    await db.execute("INSERT INTO auth_sessions (token_hash, user_id, created_at, expires_at)"
                     " VALUES (%s, 2, %s, %s)", ("a" * 64, T0, T0))
    await db.execute("INSERT INTO login_failures (throttle_key, failed_at) VALUES ('k', %s)",
                     (T0,))
    await db.execute("INSERT INTO classrooms (id, name, description, join_code, instructor_id,"
                     " created_at) VALUES (1, 'Logic', 'd', 'ABCDEFGHJK', 1, %s)", (T0,))
    await db.execute("INSERT INTO memberships (classroom_id, user_id, role, joined_at)"
                     " VALUES (1, 1, 'instructor', %s), (1, 2, 'student', %s)", (T0, T0))
    await db.execute("INSERT INTO posts (id, classroom_id, author_id, title, body, created_at)"
                     " VALUES (1, 1, 1, 'Welcome', 'Hello', %s)", (T0,))
    await db.execute("INSERT INTO tags (id, classroom_id, name) VALUES (1, 1, 'intro')")
    await db.execute("INSERT INTO post_tags (post_id, tag_id) VALUES (1, 1)")
    await db.execute("INSERT INTO rooms (id, classroom_id, kind, topic, created_by, created_at,"
                     " last_seq) VALUES (1, 1, 'live', 't', 1, %s, 1)", (T0,))
    await db.execute("INSERT INTO room_events (room_id, seq, event, sender_id, recipient_id,"
                     " data, created_at) VALUES (1, 1, 'message', 2, NULL, '{}', %s)", (T0,))


async def fill_version_2(storage: Storage) -> None:
    """Version 1's rows with version 2's columns, and the live event's client id where
    version 2 kept it: an idempotency key of scope 'live' answered "room:seq"."""
    await fill_version_1(storage)
    db = storage.db
    await db.execute("UPDATE posts SET edited_at = %s WHERE id = 1", (T0,))
    await db.execute("UPDATE classrooms SET join_open = 0 WHERE id = 1")
    await db.execute("INSERT INTO post_comments (post_id, author_id, body, created_at)"
                     " VALUES (1, 2, 'Thanks', %s)", (T0,))
    await db.execute("INSERT INTO idempotency_keys (user_id, scope, idem_key, answer,"
                     " created_at) VALUES (2, 'live', 'k-before', '1:1', %s),"
                     " (2, 'POST /api/v1/x', 'k-api', 'answer', %s)", (T0, T0))


async def fill_version(storage: Storage, version: int) -> None:
    fillers = {1: fill_version_1, 2: fill_version_2}
    await fillers[version](storage)


async def tables(storage: Storage) -> dict[str, object]:
    found = await (mysql_tables(storage) if storage.backend == "mysql"
                   else sqlite_tables(storage))
    return dict(found)


@pytest.mark.parametrize("version", RELEASED)
async def test_an_old_database_with_data_upgrades_to_the_new_schema(
        db_url: str, tmp_path: Path, backend: str, version: int) -> None:
    with trio.fail_after(60):
        async with open_storage(db_url) as old:
            await create_version(old, version)
            await fill_version(old, version)
            assert await old.init_schema() == SCHEMA_VERSION
            assert await old.init_schema() == SCHEMA_VERSION  # and again: nothing to do
            upgraded = await tables(old)
            user = await old.get_user(2)
            assert user is not None
            assert user.display_name == "Ada"
            classroom = await old.get_classroom_by_code("ABCDEFGHJK")
            assert classroom is not None
            posts = await old.list_posts(classroom.id)
            if version < 2:
                # Version 2: joining stays open, nothing archived, no post edited, no comments.
                assert classroom.join_open and classroom.archived_at is None
                assert [(p.title, p.tags, p.edited_at) for p in posts] == [
                    ("Welcome", ("intro",), None)]
                assert await old.list_comments([posts[0].id], private_of=None) == []
            else:
                assert not classroom.join_open
                assert [(p.title, p.edited_at) for p in posts] == [("Welcome", T0)]
                assert [c.body for c in await old.list_comments([posts[0].id],
                                                                private_of=None)] == ["Thanks"]
            events = await old.list_room_events(1, after=0)
            assert [(e.seq, e.event, e.sender_id) for e in events] == [(1, "message", 2)]
            if version >= 2:
                # Version 3: the live client id moved into the event's row; a resend of it
                # after the upgrade gets the event stored before, not a second one.
                again = await old.append_event(1, "message", 2, None, "{}", T0,
                                               client_id="k-before")
                assert again == events[0]
                assert await old.reserve_key(2, "POST /api/v1/x", "k-api", T0) == "answer"
        if backend == "sqlite":
            fresh_url = f"sqlite:///{tmp_path / 'fresh.db'}"
            async with open_storage(fresh_url) as fresh:
                await fresh.init_schema()
                assert upgraded == await tables(fresh)
        else:
            async with throwaway_mysql_url() as fresh_url, open_storage(fresh_url) as fresh:
                await fresh.init_schema()
                assert upgraded == await tables(fresh)
