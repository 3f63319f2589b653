"""Schema upgrades: the ordered steps that take a database of an earlier version to this one.

The rules, enforced by `Storage.init_schema`:
- `schema.sql` and `schema_sqlite.sql` always describe the newest schema. A database with no
  `schema_version` row is created from them and stamped `SCHEMA_VERSION`; no step runs.
- A database at version N runs every step above N in order, each stamping its own version
  as it finishes, *before* the schema files run again. So a step may alter only tables that
  existed at its previous version (add a column, an index, backfill rows); a new table goes
  in the schema files alone (their `CREATE TABLE IF NOT EXISTS` also creates it in an old
  database, right after the steps).
- Several processes may start at once: MySQL upgrades under a named lock, SQLite under its
  write lock, and each re-reads the version once it holds the lock.
- A step is written for both backends (`mysql`, `sqlite`); MySQL DDL is not transactional,
  so a step stamps its version right after its statements and is never edited once released.
- `SCHEMA_VERSION` is the last step's version; `tests/storage/test_upgrade.py` upgrades a
  database of every released version that holds data.
"""

from __future__ import annotations

from typing import Final

import attrs


@attrs.frozen
class Step:
    version: int
    why: str
    mysql: tuple[str, ...]
    sqlite: tuple[str, ...]

    def statements(self, backend: str) -> tuple[str, ...]:
        return self.mysql if backend == "mysql" else self.sqlite


# Append only. Version 1 is the first release (no step: it was created from the schema files).
STEPS: Final[tuple[Step, ...]] = (
    Step(
        version=2,
        why="posts keep when they were edited; a class's join code can be turned off and the "
            "class archived (post_comments is a new table: the schema files create it)",
        mysql=(
            "ALTER TABLE posts ADD COLUMN edited_at DATETIME(6) NULL",
            "ALTER TABLE classrooms ADD COLUMN join_open TINYINT NOT NULL DEFAULT 1",
            "ALTER TABLE classrooms ADD COLUMN archived_at DATETIME(6) NULL",
        ),
        sqlite=(
            "ALTER TABLE posts ADD COLUMN edited_at DATETIME NULL",
            "ALTER TABLE classrooms ADD COLUMN join_open TINYINT NOT NULL DEFAULT 1",
            "ALTER TABLE classrooms ADD COLUMN archived_at DATETIME NULL",
        ),
    ),
    Step(
        version=3,
        why="a live event keeps its sender's client id in its own row (a unique key), so "
            "storing one is a statement fewer than writing an idempotency key beside it; "
            "the live idempotency keys move there",
        # idempotency_keys came with version 2 from the schema files, which run after the
        # steps: a database of version 1 gets it here first (the same table, so the schema
        # files find it made), empty.
        mysql=(
            "CREATE TABLE IF NOT EXISTS idempotency_keys ("
            " user_id BIGINT NOT NULL, scope VARCHAR(120) NOT NULL,"
            " idem_key VARCHAR(100) NOT NULL, answer MEDIUMTEXT NOT NULL,"
            " created_at DATETIME(6) NOT NULL, PRIMARY KEY (user_id, scope, idem_key),"
            " KEY idempotency_created (created_at),"
            " CONSTRAINT idempotency_user_fk FOREIGN KEY (user_id) REFERENCES users (id)"
            " ON DELETE CASCADE) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
            "ALTER TABLE room_events ADD COLUMN client_id VARCHAR(100) NULL",
            "UPDATE room_events e JOIN idempotency_keys k ON k.user_id = e.sender_id"
            " AND k.scope = 'live'"
            " AND e.room_id = CAST(SUBSTRING_INDEX(k.answer, ':', 1) AS UNSIGNED)"
            " AND e.seq = CAST(SUBSTRING_INDEX(k.answer, ':', -1) AS UNSIGNED)"
            " SET e.client_id = k.idem_key",
            "DELETE FROM idempotency_keys WHERE scope = 'live'",
            "ALTER TABLE room_events ADD UNIQUE KEY room_events_client (sender_id, client_id)",
        ),
        sqlite=(
            "CREATE TABLE IF NOT EXISTS idempotency_keys ("
            " user_id BIGINT NOT NULL, scope VARCHAR(120) NOT NULL,"
            " idem_key VARCHAR(100) NOT NULL, answer MEDIUMTEXT NOT NULL,"
            " created_at DATETIME NOT NULL, PRIMARY KEY (user_id, scope, idem_key),"
            " CONSTRAINT idempotency_user_fk FOREIGN KEY (user_id) REFERENCES users (id)"
            " ON DELETE CASCADE)",
            "ALTER TABLE room_events ADD COLUMN client_id VARCHAR(100) NULL",
            "UPDATE room_events SET client_id = k.idem_key FROM idempotency_keys k"
            " WHERE k.user_id = room_events.sender_id AND k.scope = 'live'"
            " AND k.answer = room_events.room_id || ':' || room_events.seq",
            "DELETE FROM idempotency_keys WHERE scope = 'live'",
            "CREATE UNIQUE INDEX IF NOT EXISTS room_events_client"
            " ON room_events (sender_id, client_id)",
        ),
    ),
)

SCHEMA_VERSION: Final = STEPS[-1].version if STEPS else 1
