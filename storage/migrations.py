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
)

SCHEMA_VERSION: Final = STEPS[-1].version if STEPS else 1
