"""The small executor interface both backends provide, and the SQL dialect differences.

Queries are written once, with `%s` placeholders, in `store.py`; a backend runs them on its
own driver. Every method raises only `storage.errors` exceptions: driver errors are translated
here at the boundary, with `from`.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Final

import attrs

Row = tuple[Any, ...]
Params = Sequence[Any]

# Every query runs under this deadline: a database that stops answering turns into
# StorageUnavailable (HTTP 503) instead of a request that hangs.
QUERY_TIMEOUT: Final = 10.0


@attrs.frozen
class Dialect:
    name: str
    insert_ignore: str  # "INSERT IGNORE" or "INSERT OR IGNORE"
    for_update: str  # row lock suffix for SELECT inside a transaction ("" where the whole db locks)
    # How an UPDATE hands back the value it wrote, in the same round trip: RETURNING (a row)
    # where the database has it, else MySQL's LAST_INSERT_ID(expr) (the OK packet's insert id).
    update_returning: bool = False


@attrs.frozen
class Written:
    rowcount: int
    lastrowid: int | None


class Executor(abc.ABC):
    """Runs statements on one connection (inside a transaction) or on any (outside one)."""

    dialect: Dialect

    @abc.abstractmethod
    async def execute(self, sql: str, params: Params = ()) -> Written: ...

    @abc.abstractmethod
    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None


class Database(Executor):
    """A backend: an executor that can also open transactions and be closed."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect now; raises StorageUnavailable when the database cannot be reached."""

    @abc.abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Executor]:
        """All statements on the yielded executor commit together, or none do
        (rollback on any exception, cancellation included)."""

    async def execute_together(self, statements: Sequence[tuple[str, Params]]
                               ) -> list[Written]:
        """Run the statements as one transaction (all or none) and return each one's outcome.
        Here one by one inside `transaction()`; a backend that can send them all in one round
        trip does (every statement is sent, so none may depend on another's answer except
        through SQL, e.g. MySQL's LAST_INSERT_ID())."""
        async with self.transaction() as tx:
            return [await tx.execute(sql, params) for sql, params in statements]

    @abc.abstractmethod
    async def run_script(self, statements: Sequence[str]) -> None:
        """Run DDL statements one by one (schema creation)."""

    @abc.abstractmethod
    async def aclose(self) -> None: ...


def split_script(text: str) -> list[str]:
    """Split a schema file into statements: ';' at a line end ends one; '--' lines are notes."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    chunks = "\n".join(lines).split(";\n")
    return [stmt for stmt in (chunk.strip().rstrip(";").strip() for chunk in chunks) if stmt]

