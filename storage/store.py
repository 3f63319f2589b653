"""The one Storage API the rest of the program uses, written once over either backend.

No business rules live here: callers have already checked who may do what and validated
every value; this module only reads and writes rows, and keeps multi-row writes atomic.

Caches: app servers keep a per-process cache of sessions and of each class's record,
members' roles, posts and tags (classroom/cache.py). Every write that changes any of those
must say so, in its own transaction, with `self._log_change(tx, scope, key_id)` (scope
CHANGE_USER: a user's record or sessions; CHANGE_CLASSROOM: anything shown of one class,
its members included; a user's name shows in their classes' posts, so renaming logs
each of those classes) and then `self._notify(...)` once committed; code outside this module
calls `changed(scope, key_id)`. The log row reaches every other process within the cache's
staleness bound; the notification drops this process's copy at once.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, Final, ParamSpec, TypeVar

import attrs

from .database import Database, Executor, Row, split_script
from .errors import Contention, DuplicateKey, StorageError
from .groupcommit import GroupCommit
from .migrations import SCHEMA_VERSION, STEPS
from .mysql import MySQLDatabase
from .records import (
    Attendance,
    Classroom,
    Comment,
    Departure,
    Member,
    Membership,
    Post,
    Room,
    RoomEvent,
    StateValue,
    StateWrite,
    TagCount,
    User,
)

_USER_COLUMNS: Final = "u.id, u.username, u.display_name, u.created_at"
_CLASSROOM_COLUMNS: Final = (
    "c.id, c.name, c.description, c.join_code, c.instructor_id, i.display_name, c.created_at,"
    " c.join_open, c.archived_at"
)
_CLASSROOM_WIDTH: Final = 9
_POST_COLUMNS: Final = (
    "p.id, p.classroom_id, p.author_id, u.display_name, p.title, p.body, p.created_at,"
    " p.edited_at"
)
_COMMENT_COLUMNS: Final = (
    "k.id, k.post_id, k.author_id, u.display_name, k.student_id, k.body, k.created_at"
)
_ROOM_COLUMNS: Final = (
    "id, classroom_id, kind, topic, created_by, created_at, ended_at, chat_server, last_seq"
)
# Values per `IN (...)` list: well under both databases' placeholder limits.
_IN_LIST_PAGE: Final = 500
# Users whose joins one round of attendance_join_many writes (SQLite allows 32,766 values).
JOIN_BATCH: Final = 200
# How long a retry may come after its first try and still get the first answer.
KEY_LIFETIME: Final = timedelta(days=1)
_EVENT_COLUMNS: Final = "room_id, seq, event, sender_id, recipient_id, data, created_at"
# Events one transaction stores at most, and their data's characters (a statement stays
# far from MySQL's max_allowed_packet and SQLite's placeholder limit).
APPEND_BATCH: Final = 100
APPEND_BATCH_BYTES: Final = 1024 * 1024
# Batches written at once (each holds a pooled connection): a batch's time is mostly waiting
# for the database, during which the next can be under way.
APPEND_PARALLEL: Final = 4
# One statement (both dialects know REPLACE): a DELETE then INSERT transaction deadlocks on
# MySQL when several users set a first value at once (gap locks).
_REPLACE_STATE: Final = ("REPLACE INTO room_state (room_id, user_id, name, value, updated_at)"
                         " VALUES (%s, %s, %s, %s, %s)")
_CLEAR_STATE: Final = "DELETE FROM room_state WHERE room_id = %s AND name = %s"

# Scopes of the cache invalidation log (see the module docstring).
CHANGE_USER: Final = "user"
CHANGE_CLASSROOM: Final = "classroom"
ChangeListener = Callable[[str, int], None]


def _user(row: Row, at: int = 0) -> User:
    return User(id=row[at], username=row[at + 1], display_name=row[at + 2],
                created_at=row[at + 3])


def _classroom(row: Row, at: int = 0) -> Classroom:
    (id_, name, description, join_code, instructor_id, instructor_name, created_at,
     join_open, archived_at) = row[at:at + _CLASSROOM_WIDTH]
    return Classroom(id=id_, name=name, description=description, join_code=join_code,
                     instructor_id=instructor_id, instructor_name=instructor_name,
                     created_at=created_at, join_open=bool(join_open), archived_at=archived_at)


def _room(row: Row) -> Room:
    return Room(*row)


def _event(row: Row) -> RoomEvent:
    return RoomEvent(*row)


def _post(row: Row, tags: tuple[str, ...]) -> Post:
    return Post(id=row[0], classroom_id=row[1], author_id=row[2], author_name=row[3],
                title=row[4], body=row[5], tags=tags, created_at=row[6], edited_at=row[7])


def _in_list(values: Sequence[Any]) -> str:
    return ", ".join(["%s"] * len(values))


T = TypeVar("T")


def _pages(values: Sequence[T], size: int = _IN_LIST_PAGE) -> list[Sequence[T]]:
    return [values[start:start + size] for start in range(0, len(values), size)]


def _closed(last_join: datetime, at: datetime) -> tuple[datetime, float]:
    """A user's last connection to a room closed `at`: the attendance's last leave, and the
    seconds its last stretch adds. Never before the last join: a departure written late, or
    a dead server's last renewal, may predate it (then the stretch ended at once)."""
    left = max(at, last_join)
    return left, (left - last_join).total_seconds()


P = ParamSpec("P")
R = TypeVar("R")


def _retried(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Run a writing method once more when the database rolled it back for a deadlock or a
    lock wait timeout (Contention). Each such method is one whole transaction, so the second
    run starts from nothing; a second Contention is raised (the caller answers 503)."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except Contention:
            return await method(*args, **kwargs)

    return wrapper

@attrs.frozen
class _NewEvent:
    """An event to store (see Storage.append_event)."""

    room_id: int
    event: str
    sender_id: int
    recipient_id: int | None
    data: str
    now: datetime
    client_id: str | None


class Storage:
    """Every read and write the program makes. Raises only `storage.errors` exceptions."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._listeners: list[ChangeListener] = []
        # Events stored together while others are being stored (see append_event).
        self._appends: GroupCommit[_NewEvent, RoomEvent | None] = GroupCommit(
            self._append_batch, max_items=APPEND_BATCH, size=lambda new: len(new.data),
            max_size=APPEND_BATCH_BYTES, parallel=APPEND_PARALLEL)

    @property
    def backend(self) -> str:
        return self.db.dialect.name

    def pool_use(self) -> tuple[int, int] | None:
        """MySQL: connections leased now and the pool's bound; None for SQLite."""
        return self.db.pool_use() if isinstance(self.db, MySQLDatabase) else None

    async def aclose(self) -> None:
        await self.db.aclose()

    # -- schema --------------------------------------------------------------------------

    async def init_schema(self) -> int:
        """Create or upgrade the schema (the rules are in `migrations.py`); safe to run any
        number of times, from several processes at once. Returns the version now in force."""
        name = "schema.sql" if self.backend == "mysql" else "schema_sqlite.sql"
        text = resources.files("storage").joinpath(name).read_text(encoding="utf-8")
        if 0 < await self.schema_version() < SCHEMA_VERSION:
            await self._upgrade()
        await self.db.run_script(split_script(text))
        await self.db.execute(
            f"{self.db.dialect.insert_ignore} INTO schema_version (id, version) VALUES (1, %s)",
            (SCHEMA_VERSION,),
        )
        return await self.schema_version()

    async def _upgrade(self) -> None:
        mysql = self.backend == "mysql"
        # MySQL DDL commits as it goes, so the transaction only pins one connection for the
        # named lock; on SQLite it is the write lock itself (DDL is transactional there).
        async with self.db.transaction() as tx:
            if mysql:
                await tx.fetch_all("SELECT GET_LOCK('classroom_schema_upgrade', 120)")
            try:
                row = await tx.fetch_one("SELECT version FROM schema_version WHERE id = 1")
                current = int(row[0]) if row else SCHEMA_VERSION
                for step in STEPS:
                    if step.version <= current:
                        continue
                    for statement in step.statements(self.backend):
                        await tx.execute(statement)
                    await tx.execute("UPDATE schema_version SET version = %s WHERE id = 1",
                                     (step.version,))
            finally:
                if mysql:
                    await tx.fetch_all("SELECT RELEASE_LOCK('classroom_schema_upgrade')")

    async def schema_version(self) -> int:
        """The stored schema version; 0 when the schema was never created."""
        try:
            row = await self.db.fetch_one("SELECT version FROM schema_version WHERE id = 1")
        except StorageError:
            if not await self.ping():
                raise
            return 0
        return int(row[0]) if row else 0

    async def ping(self) -> bool:
        await self.db.fetch_all("SELECT 1")
        return True

    # -- cache invalidation -------------------------------------------------------------

    def add_change_listener(self, listener: ChangeListener) -> None:
        """Call `listener(scope, key_id)` after every change this process commits."""
        self._listeners.append(listener)

    @_retried
    async def changed(self, scope: str, key_id: int) -> None:
        """Record that what caches hold under (scope, key_id) changed (see the module
        docstring); for writes made outside this module."""
        async with self.db.transaction() as tx:
            await self._log_change(tx, scope, key_id)
        self._notify(scope, key_id)

    async def _log_change(self, tx: Executor, scope: str, key_id: int) -> None:
        now = datetime.now(UTC).replace(tzinfo=None)
        await tx.execute(
            "INSERT INTO cache_changes (scope, key_id, created_at) VALUES (%s, %s, %s)",
            (scope, key_id, now))

    def _notify(self, scope: str, key_id: int) -> None:
        for listener in self._listeners:
            listener(scope, key_id)

    async def last_change_id(self) -> int:
        row = await self.db.fetch_one("SELECT MAX(id) FROM cache_changes")
        return int(row[0]) if row and row[0] is not None else 0

    async def changes_after(self, after_id: int, limit: int) -> list[tuple[int, str, int]]:
        """(id, scope, key_id) of logged changes with a larger id, oldest first."""
        rows = await self.db.fetch_all(
            "SELECT id, scope, key_id FROM cache_changes WHERE id > %s ORDER BY id LIMIT %s",
            (after_id, limit))
        return [(int(r[0]), str(r[1]), int(r[2])) for r in rows]

    # -- users and sign-in ---------------------------------------------------------------

    async def create_user(self, username: str, display_name: str, password_hash: str,
                          now: datetime) -> User:
        """Raises DuplicateKey when the username is taken."""
        written = await self.db.execute(
            "INSERT INTO users (username, display_name, password_hash, created_at)"
            " VALUES (%s, %s, %s, %s)",
            (username, display_name, password_hash, now),
        )
        assert written.lastrowid is not None
        return User(id=written.lastrowid, username=username, display_name=display_name,
                    created_at=now)

    async def get_user(self, user_id: int) -> User | None:
        row = await self.db.fetch_one(f"SELECT {_USER_COLUMNS} FROM users u WHERE u.id = %s",
                                      (user_id,))
        return _user(row) if row else None

    async def get_user_by_username(self, username: str) -> User | None:
        row = await self.db.fetch_one(
            f"SELECT {_USER_COLUMNS} FROM users u WHERE u.username = %s", (username,))
        return _user(row) if row else None

    async def get_password_hash(self, username: str) -> tuple[User, str] | None:
        row = await self.db.fetch_one(
            f"SELECT {_USER_COLUMNS}, u.password_hash FROM users u WHERE u.username = %s",
            (username,))
        return (_user(row), row[4]) if row else None

    async def create_auth_session(self, token_hash: str, user_id: int, now: datetime,
                                  expires_at: datetime) -> None:
        await self.db.execute(
            "INSERT INTO auth_sessions (token_hash, user_id, created_at, expires_at)"
            " VALUES (%s, %s, %s, %s)",
            (token_hash, user_id, now, expires_at),
        )

    async def get_session_user(self, token_hash: str, now: datetime) -> User | None:
        row = await self.db.fetch_one(
            f"SELECT {_USER_COLUMNS} FROM auth_sessions s JOIN users u ON u.id = s.user_id"
            " WHERE s.token_hash = %s AND s.expires_at > %s",
            (token_hash, now),
        )
        return _user(row) if row else None

    async def get_session(self, token_hash: str, now: datetime) -> tuple[User, datetime] | None:
        """The session's user and when it expires, unless it has."""
        row = await self.db.fetch_one(
            f"SELECT {_USER_COLUMNS}, s.expires_at FROM auth_sessions s"
            " JOIN users u ON u.id = s.user_id WHERE s.token_hash = %s AND s.expires_at > %s",
            (token_hash, now),
        )
        return (_user(row), row[4]) if row else None

    async def get_sessions(self, token_hashes: Sequence[str]
                           ) -> dict[str, tuple[User, datetime]]:
        """Each of these sessions that exists, expired or not: its user and when it
        expires. A missing one was signed out."""
        found: dict[str, tuple[User, datetime]] = {}
        for page in _pages(token_hashes):
            for row in await self.db.fetch_all(
                    f"SELECT {_USER_COLUMNS}, s.expires_at, s.token_hash FROM auth_sessions s"
                    f" JOIN users u ON u.id = s.user_id WHERE s.token_hash IN ({_in_list(page)})",
                    tuple(page)):
                found[row[5]] = (_user(row), row[4])
        return found

    @_retried
    async def delete_auth_session(self, token_hash: str) -> None:
        async with self.db.transaction() as tx:
            row = await tx.fetch_one(
                "SELECT user_id FROM auth_sessions WHERE token_hash = %s" + tx.dialect.for_update,
                (token_hash,))
            if row is None:
                return
            await tx.execute("DELETE FROM auth_sessions WHERE token_hash = %s", (token_hash,))
            await self._log_change(tx, CHANGE_USER, int(row[0]))
        self._notify(CHANGE_USER, int(row[0]))

    async def ended_sessions(self, token_hashes: Sequence[str], now: datetime
                             ) -> dict[str, datetime | None]:
        """Which of these sign-ins (distinct) have ended by `now`: each with when it expired,
        or None when it was deleted (signed out). The sign-in check's question while the
        cache does not serve (see Accounts.ended_sessions), when nearly always none has
        ended: each page of the list is counted first (one row back), its rows read only when
        the count falls short (for 5,000 sign-ins 7 ms of CPU instead of 31-37 ms)."""
        ended: dict[str, datetime | None] = {}
        for page in _pages(token_hashes):
            in_list = _in_list(page)
            alive = await self.db.fetch_all(
                f"SELECT COUNT(*) FROM auth_sessions WHERE token_hash IN ({in_list})"
                " AND expires_at > %s", (*page, now))
            if alive[0][0] == len(page):
                continue
            expiries: dict[str, datetime] = dict(await self.db.fetch_all(
                "SELECT token_hash, expires_at FROM auth_sessions"
                f" WHERE token_hash IN ({in_list})", tuple(page)))
            for token_hash in page:
                expires_at = expiries.get(token_hash)
                if expires_at is None or expires_at <= now:
                    ended[token_hash] = expires_at
        return ended

    @_retried
    async def change_password(self, user_id: int, password_hash: str,
                              keep_token_hash: str | None) -> None:
        """Set a new password hash and end every other sign-in of the user, together."""
        async with self.db.transaction() as tx:
            await tx.execute("UPDATE users SET password_hash = %s WHERE id = %s",
                             (password_hash, user_id))
            await tx.execute("DELETE FROM auth_sessions WHERE user_id = %s"
                             " AND token_hash <> %s", (user_id, keep_token_hash or ""))
            await self._log_change(tx, CHANGE_USER, user_id)
        self._notify(CHANGE_USER, user_id)

    async def delete_expired(self, now: datetime, failures_before: datetime) -> None:
        """Forget expired sign-ins, login failures older than the throttle window and
        idempotency keys older than a day."""
        await self.db.execute("DELETE FROM auth_sessions WHERE expires_at <= %s", (now,))
        await self.db.execute("DELETE FROM idempotency_keys WHERE created_at < %s",
                              (now - KEY_LIFETIME,))
        await self.db.execute("DELETE FROM login_failures WHERE failed_at < %s",
                              (failures_before,))
        # Caches read the log a few times a second; an old row serves nobody.
        await self.db.execute("DELETE FROM cache_changes WHERE created_at < %s",
                              (failures_before,))

    @_retried
    async def record_login_failure(self, keys: Sequence[str], now: datetime) -> None:
        async with self.db.transaction() as tx:
            for key in keys:
                await tx.execute(
                    "INSERT INTO login_failures (throttle_key, failed_at) VALUES (%s, %s)",
                    (key, now))

    async def count_login_failures(self, key: str, since: datetime) -> int:
        row = await self.db.fetch_one(
            "SELECT COUNT(*) FROM login_failures WHERE throttle_key = %s AND failed_at > %s",
            (key, since))
        return int(row[0]) if row else 0

    async def clear_login_failures(self, keys: Sequence[str]) -> None:
        await self.db.execute(
            f"DELETE FROM login_failures WHERE throttle_key IN ({_in_list(keys)})", tuple(keys))

    # -- classes and membership ----------------------------------------------------------

    @_retried
    async def create_classroom(self, name: str, description: str, join_code: str,
                               instructor: User, now: datetime) -> Classroom:
        """Creates the class and its instructor's membership together.
        Raises DuplicateKey when the join code is taken (the caller draws another)."""
        async with self.db.transaction() as tx:
            written = await tx.execute(
                "INSERT INTO classrooms (name, description, join_code, instructor_id, created_at)"
                " VALUES (%s, %s, %s, %s, %s)",
                (name, description, join_code, instructor.id, now),
            )
            assert written.lastrowid is not None
            await tx.execute(
                "INSERT INTO memberships (classroom_id, user_id, role, joined_at)"
                " VALUES (%s, %s, 'instructor', %s)",
                (written.lastrowid, instructor.id, now),
            )
        return Classroom(id=written.lastrowid, name=name, description=description,
                         join_code=join_code, instructor_id=instructor.id,
                         instructor_name=instructor.display_name, created_at=now)

    async def _classroom_where(self, where: str, value: Any) -> Classroom | None:
        row = await self.db.fetch_one(
            f"SELECT {_CLASSROOM_COLUMNS} FROM classrooms c"
            f" JOIN users i ON i.id = c.instructor_id WHERE {where} = %s",
            (value,),
        )
        return _classroom(row) if row else None

    async def get_classroom(self, classroom_id: int) -> Classroom | None:
        return await self._classroom_where("c.id", classroom_id)

    async def get_classroom_by_code(self, join_code: str) -> Classroom | None:
        return await self._classroom_where("c.join_code", join_code)

    async def get_role(self, classroom_id: int, user_id: int) -> str | None:
        row = await self.db.fetch_one(
            "SELECT role FROM memberships WHERE classroom_id = %s AND user_id = %s",
            (classroom_id, user_id))
        return str(row[0]) if row else None

    @_retried
    async def add_member(self, classroom_id: int, user_id: int, role: str,
                         now: datetime) -> bool:
        """Returns False (and changes nothing) when the user is already a member."""
        async with self.db.transaction() as tx:
            written = await tx.execute(
                f"{tx.dialect.insert_ignore} INTO memberships"
                " (classroom_id, user_id, role, joined_at) VALUES (%s, %s, %s, %s)",
                (classroom_id, user_id, role, now),
            )
            if written.rowcount != 1:
                return False
            await self._log_change(tx, CHANGE_CLASSROOM, classroom_id)
        self._notify(CHANGE_CLASSROOM, classroom_id)
        return True

    @_retried
    async def remove_member(self, classroom_id: int, user_id: int) -> bool:
        """A student leaves (or is removed from) the class. False when they were not one."""
        async with self.db.transaction() as tx:
            written = await tx.execute(
                "DELETE FROM memberships WHERE classroom_id = %s AND user_id = %s"
                " AND role = 'student'", (classroom_id, user_id))
            await self._log_change(tx, CHANGE_CLASSROOM, classroom_id)
        self._notify(CHANGE_CLASSROOM, classroom_id)
        return written.rowcount == 1

    async def set_join_code(self, classroom_id: int, join_code: str) -> None:
        """A new code (the old one stops working). DuplicateKey when it is taken."""
        await self._update_classroom(classroom_id, "join_code = %s, join_open = 1", join_code)

    async def set_join_open(self, classroom_id: int, join_open: bool) -> None:
        await self._update_classroom(classroom_id, "join_open = %s", 1 if join_open else 0)

    async def set_archived(self, classroom_id: int, archived_at: datetime | None) -> None:
        await self._update_classroom(classroom_id, "archived_at = %s", archived_at)

    @_retried
    async def _update_classroom(self, classroom_id: int, assignment: str, value: Any) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(f"UPDATE classrooms SET {assignment} WHERE id = %s",
                             (value, classroom_id))
            await self._log_change(tx, CHANGE_CLASSROOM, classroom_id)
        self._notify(CHANGE_CLASSROOM, classroom_id)

    async def list_memberships(self, user_id: int) -> list[Membership]:
        rows = await self.db.fetch_all(
            f"SELECT {_CLASSROOM_COLUMNS}, m.role, m.joined_at FROM memberships m"
            " JOIN classrooms c ON c.id = m.classroom_id"
            " JOIN users i ON i.id = c.instructor_id"
            " WHERE m.user_id = %s ORDER BY c.id DESC",
            (user_id,),
        )
        width = _CLASSROOM_WIDTH
        return [Membership(classroom=_classroom(r), role=r[width], joined_at=r[width + 1])
                for r in rows]

    async def member_ids(self, classroom_id: int) -> set[int]:
        """Every member's user id, the instructor's included."""
        rows = await self.db.fetch_all(
            "SELECT user_id FROM memberships WHERE classroom_id = %s", (classroom_id,))
        return {int(row[0]) for row in rows}

    async def list_members(self, classroom_id: int) -> list[Member]:
        """Instructor first, then students in the order they joined."""
        rows = await self.db.fetch_all(
            f"SELECT {_USER_COLUMNS}, m.role, m.joined_at FROM memberships m"
            " JOIN users u ON u.id = m.user_id WHERE m.classroom_id = %s"
            " ORDER BY CASE m.role WHEN 'instructor' THEN 0 ELSE 1 END, m.joined_at, u.id",
            (classroom_id,),
        )
        return [Member(user=_user(r), role=r[4], joined_at=r[5]) for r in rows]

    # -- posts and tags ------------------------------------------------------------------

    @_retried
    async def create_post(self, classroom_id: int, author: User, title: str, body: str,
                          tags: Sequence[str], now: datetime) -> Post:
        """Tags are stored as given (the caller normalizes them); new ones are created."""
        async with self.db.transaction() as tx:
            # Posts of one class are written one at a time (MySQL row lock): two posts
            # creating the same new tags in different orders would otherwise deadlock.
            await tx.fetch_all("SELECT id FROM classrooms WHERE id = %s" + tx.dialect.for_update,
                               (classroom_id,))
            written = await tx.execute(
                "INSERT INTO posts (classroom_id, author_id, title, body, created_at)"
                " VALUES (%s, %s, %s, %s, %s)",
                (classroom_id, author.id, title, body, now),
            )
            post_id = written.lastrowid
            assert post_id is not None
            await self._tag_post(tx, post_id, classroom_id, tags)
            await self._log_change(tx, CHANGE_CLASSROOM, classroom_id)
        self._notify(CHANGE_CLASSROOM, classroom_id)
        return Post(id=post_id, classroom_id=classroom_id, author_id=author.id,
                    author_name=author.display_name, title=title, body=body,
                    tags=tuple(tags), created_at=now)

    async def list_posts(self, classroom_id: int, *, tag: str | None = None,
                         before_id: int | None = None, limit: int = 50) -> list[Post]:
        """Newest first; `before_id` pages further back."""
        where = ["p.classroom_id = %s"]
        params: list[Any] = [classroom_id]
        if tag is not None:
            where.append("p.id IN (SELECT pt.post_id FROM post_tags pt JOIN tags t"
                         " ON t.id = pt.tag_id WHERE t.classroom_id = %s AND t.name = %s)")
            params += [classroom_id, tag]
        if before_id is not None:
            where.append("p.id < %s")
            params.append(before_id)
        rows = await self.db.fetch_all(
            f"SELECT {_POST_COLUMNS} FROM posts p JOIN users u ON u.id = p.author_id"
            f" WHERE {' AND '.join(where)} ORDER BY p.id DESC LIMIT %s",
            (*params, limit),
        )
        return await self._with_tags(rows)

    async def _with_tags(self, rows: Sequence[Row]) -> list[Post]:
        if not rows:
            return []
        ids = [r[0] for r in rows]
        tag_rows = await self.db.fetch_all(
            "SELECT pt.post_id, t.name FROM post_tags pt JOIN tags t ON t.id = pt.tag_id"
            f" WHERE pt.post_id IN ({_in_list(ids)}) ORDER BY t.name",
            ids,
        )
        tags: dict[int, list[str]] = {}
        for post_id, name in tag_rows:
            tags.setdefault(post_id, []).append(name)
        return [_post(r, tuple(tags.get(r[0], ()))) for r in rows]

    async def get_post(self, post_id: int) -> Post | None:
        rows = await self.db.fetch_all(
            f"SELECT {_POST_COLUMNS} FROM posts p JOIN users u ON u.id = p.author_id"
            " WHERE p.id = %s", (post_id,))
        posts = await self._with_tags(rows)
        return posts[0] if posts else None

    @_retried
    async def update_post(self, post_id: int, title: str, body: str, tags: Sequence[str],
                          now: datetime) -> bool:
        """New title, text and tags (replacing the old ones); `edited_at` is `now`.
        False when the post is gone."""
        async with self.db.transaction() as tx:
            row = await tx.fetch_one("SELECT classroom_id FROM posts WHERE id = %s", (post_id,))
            if row is None:
                return False
            classroom_id = row[0]
            # The same lock as create_post: tags of one class are written one post at a time.
            await tx.fetch_all("SELECT id FROM classrooms WHERE id = %s" + tx.dialect.for_update,
                               (classroom_id,))
            await tx.execute("UPDATE posts SET title = %s, body = %s, edited_at = %s"
                             " WHERE id = %s", (title, body, now, post_id))
            await tx.execute("DELETE FROM post_tags WHERE post_id = %s", (post_id,))
            await self._tag_post(tx, post_id, classroom_id, tags)
            await self._log_change(tx, CHANGE_CLASSROOM, classroom_id)
        self._notify(CHANGE_CLASSROOM, classroom_id)
        return True

    @staticmethod
    async def _tag_post(tx: Executor, post_id: int, classroom_id: int,
                        tags: Sequence[str]) -> None:
        """Attach `tags` to the post, creating those the class does not have yet (the
        caller holds the class row's lock, so tags of one class are written one at a time)."""
        for tag in tags:
            await tx.execute(
                f"{tx.dialect.insert_ignore} INTO tags (classroom_id, name) VALUES (%s, %s)",
                (classroom_id, tag))
            await tx.execute(
                f"{tx.dialect.insert_ignore} INTO post_tags (post_id, tag_id)"
                " SELECT %s, id FROM tags WHERE classroom_id = %s AND name = %s",
                (post_id, classroom_id, tag))

    @_retried
    async def delete_post(self, post_id: int) -> bool:
        """The post, its tags' links and its comments. False when it was gone already."""
        async with self.db.transaction() as tx:
            row = await tx.fetch_one("SELECT classroom_id FROM posts WHERE id = %s", (post_id,))
            if row is None:
                return False
            await tx.execute("DELETE FROM posts WHERE id = %s", (post_id,))
            await self._log_change(tx, CHANGE_CLASSROOM, int(row[0]))
        self._notify(CHANGE_CLASSROOM, int(row[0]))
        return True

    # -- comments ------------------------------------------------------------------------

    @_retried
    async def add_comment(self, post_id: int, author: User, student_id: int | None,
                          body: str, now: datetime) -> Comment:
        async with self.db.transaction() as tx:
            written = await tx.execute(
                "INSERT INTO post_comments (post_id, author_id, student_id, body, created_at)"
                " VALUES (%s, %s, %s, %s, %s)", (post_id, author.id, student_id, body, now))
            classroom_id = await self._log_post_change(tx, post_id)
        if classroom_id is not None:
            self._notify(CHANGE_CLASSROOM, classroom_id)
        assert written.lastrowid is not None
        return Comment(id=written.lastrowid, post_id=post_id, author_id=author.id,
                       author_name=author.display_name, student_id=student_id, body=body,
                       created_at=now)

    async def get_comment(self, comment_id: int) -> Comment | None:
        row = await self.db.fetch_one(
            f"SELECT {_COMMENT_COLUMNS} FROM post_comments k JOIN users u ON u.id = k.author_id"
            " WHERE k.id = %s", (comment_id,))
        return Comment(*row) if row else None

    async def list_comments(self, post_ids: Sequence[int], *, private_of: int | None
                            ) -> list[Comment]:
        """Comments under these posts, oldest first: class comments and, with `private_of`,
        only that student's private threads (None: every private thread, the instructor's
        view)."""
        if not post_ids:
            return []
        sql = (f"SELECT {_COMMENT_COLUMNS} FROM post_comments k"
               " JOIN users u ON u.id = k.author_id"
               f" WHERE k.post_id IN ({_in_list(post_ids)})")
        params: list[Any] = list(post_ids)
        if private_of is not None:
            sql += " AND (k.student_id IS NULL OR k.student_id = %s)"
            params.append(private_of)
        rows = await self.db.fetch_all(sql + " ORDER BY k.id", params)
        return [Comment(*r) for r in rows]

    @_retried
    async def delete_comment(self, comment_id: int) -> bool:
        async with self.db.transaction() as tx:
            row = await tx.fetch_one("SELECT post_id FROM post_comments WHERE id = %s",
                                     (comment_id,))
            written = await tx.execute("DELETE FROM post_comments WHERE id = %s",
                                       (comment_id,))
            classroom_id = await self._log_post_change(tx, int(row[0])) if row else None
        if classroom_id is not None:
            self._notify(CHANGE_CLASSROOM, classroom_id)
        return written.rowcount == 1

    async def _log_post_change(self, tx: Executor, post_id: int) -> int | None:
        """Log a change of the post's class (comments show on its stream); its id."""
        row = await tx.fetch_one("SELECT classroom_id FROM posts WHERE id = %s", (post_id,))
        if row is None:
            return None
        await self._log_change(tx, CHANGE_CLASSROOM, int(row[0]))
        return int(row[0])

    async def list_tags(self, classroom_id: int) -> list[TagCount]:
        rows = await self.db.fetch_all(
            "SELECT t.name, COUNT(pt.post_id) FROM tags t"
            " LEFT JOIN post_tags pt ON pt.tag_id = t.id"
            " WHERE t.classroom_id = %s GROUP BY t.id, t.name"
            # A tag whose posts were all edited or deleted away is not offered as a filter.
            " HAVING COUNT(pt.post_id) > 0 ORDER BY t.name",
            (classroom_id,),
        )
        return [TagCount(name=r[0], posts=int(r[1])) for r in rows]

    # -- rooms: live sessions and discussions --------------------------------------------

    @_retried
    async def create_room(self, classroom_id: int, kind: str, topic: str, created_by: int,
                          now: datetime) -> Room:
        async with self.db.transaction() as tx:
            written = await tx.execute(
                "INSERT INTO rooms (classroom_id, kind, topic, created_by, created_at, last_seq)"
                " VALUES (%s, %s, %s, %s, %s, 0)",
                (classroom_id, kind, topic, created_by, now),
            )
            await self._log_change(tx, CHANGE_CLASSROOM, classroom_id)  # "Live now" shows
        self._notify(CHANGE_CLASSROOM, classroom_id)
        assert written.lastrowid is not None
        return Room(id=written.lastrowid, classroom_id=classroom_id, kind=kind, topic=topic,
                    created_by=created_by, created_at=now, ended_at=None, chat_server=None,
                    last_seq=0)

    async def get_room(self, room_id: int) -> Room | None:
        row = await self.db.fetch_one(f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE id = %s",
                                      (room_id,))
        return _room(row) if row else None

    async def list_rooms(self, classroom_id: int, kind: str | None = None) -> list[Room]:
        """Newest first."""
        sql = f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE classroom_id = %s"
        params: list[Any] = [classroom_id]
        if kind is not None:
            sql += " AND kind = %s"
            params.append(kind)
        rows = await self.db.fetch_all(sql + " ORDER BY id DESC", params)
        return [_room(r) for r in rows]

    async def has_open_rooms(self, classroom_id: int) -> bool:
        """Whether any room of the class (a live session, a discussion) is still open."""
        row = await self.db.fetch_one(
            "SELECT 1 FROM rooms WHERE classroom_id = %s AND ended_at IS NULL LIMIT 1",
            (classroom_id,))
        return row is not None

    async def list_open_rooms(self, classroom_ids: Sequence[int], kind: str) -> list[Room]:
        """The open rooms of `kind` in any of the classes, newest first."""
        if not classroom_ids:
            return []
        rows = await self.db.fetch_all(
            f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE classroom_id IN "
            f"({_in_list(classroom_ids)}) AND kind = %s AND ended_at IS NULL ORDER BY id DESC",
            [*classroom_ids, kind])
        return [_room(r) for r in rows]

    @_retried
    async def end_room(self, room_id: int, now: datetime) -> bool:
        """Ends the room and closes every open attendance record at `now`.
        Returns False when it had already ended."""
        async with self.db.transaction() as tx:
            ended = await self._end(tx, room_id, now)
        if ended is not None:
            self._notify(CHANGE_CLASSROOM, ended)
        return ended is not None

    @_retried
    async def close_room(self, room_id: int, event: str, sender_id: int, data: str,
                         now: datetime) -> RoomEvent | None:
        """Store a last public event and end the room, in one transaction, so nothing can be
        stored after it. None (nothing changed) when the room had already ended."""
        async with self.db.transaction() as tx:
            stored = await self._append(tx, _NewEvent(room_id, event, sender_id, None, data,
                                                      now, None))
            ended = await self._end(tx, room_id, now) if stored is not None else None
        if ended is not None:
            self._notify(CHANGE_CLASSROOM, ended)
        return stored

    async def _end(self, tx: Executor, room_id: int, now: datetime) -> int | None:
        """The room's class id if this ended it (the caller notifies once committed)."""
        written = await tx.execute(
            "UPDATE rooms SET ended_at = %s WHERE id = %s AND ended_at IS NULL", (now, room_id))
        if written.rowcount != 1:
            return None
        room = await tx.fetch_one("SELECT classroom_id FROM rooms WHERE id = %s", (room_id,))
        assert room is not None
        await self._log_change(tx, CHANGE_CLASSROOM, int(room[0]))
        rows = await tx.fetch_all(
            "SELECT user_id FROM attendance WHERE room_id = %s AND open_connections > 0"
            + tx.dialect.for_update, (room_id,))
        for (user_id,) in rows:
            await self._leave(tx, room_id, user_id, now, close_all=True)
        await tx.execute("DELETE FROM open_connections WHERE room_id = %s", (room_id,))
        return int(room[0])

    async def claim_room(self, room_id: int, server: str, *, replacing: str | None) -> bool:
        """Record that `server` hosts the room, if it is hosted by `replacing` (None: nobody).
        Returns whether the claim took (compare-and-set, so two servers cannot both win)."""
        if replacing is None:
            written = await self.db.execute(
                "UPDATE rooms SET chat_server = %s WHERE id = %s AND chat_server IS NULL",
                (server, room_id))
        else:
            written = await self.db.execute(
                "UPDATE rooms SET chat_server = %s WHERE id = %s AND chat_server = %s",
                (server, room_id, replacing))
        return written.rowcount == 1

    async def append_event(self, room_id: int, event: str, sender_id: int,
                           recipient_id: int | None, data: str, now: datetime,
                           *, state: Sequence[StateWrite] = (),
                           client_id: str | None = None) -> RoomEvent | None:
        """Store one event under the room's next seq, with the room state it changes, in one
        transaction: all of it or nothing. None (nothing stored) when the room has ended or
        does not exist, checked in the same statement that takes the seq.

        `client_id`: the sender's own id for the event. When the sender already stored an
        event under it (a resend), nothing is stored and that first event is returned.

        Events without state that arrive while others are being stored are stored together
        (groupcommit.py), in one transaction, each with the same outcome as alone."""
        if state:
            return await self._append_alone(_NewEvent(room_id, event, sender_id, recipient_id,
                                                      data, now, client_id), state)
        return await self._appends(_NewEvent(room_id, event, sender_id, recipient_id, data,
                                             now, client_id))

    async def _append_batch(self, batch: list[_NewEvent]
                            ) -> Sequence[RoomEvent | BaseException | None]:
        if len(batch) > 1:
            try:
                return await self._append_together(batch)
            except StorageError:
                pass  # each again on its own: its own retry, duplicate or error
        results: list[RoomEvent | BaseException | None] = []
        for new in batch:
            try:
                results.append(await self._append_alone(new))
            except StorageError as exc:
                results.append(exc)
        return results

    async def _append_together(self, batch: list[_NewEvent]) -> list[RoomEvent | None]:
        """The batch in one transaction: each room's seq taken once for all its events
        (in batch order), every event written with one statement.
        Raises StorageError (nothing stored) on any failure, a resend in the batch (its
        client id taken already, or used twice in the batch) included: `_append_batch` then
        stores each on its own, where a resend finds its first event."""
        results: list[RoomEvent | None] = [None] * len(batch)
        counts: dict[int, int] = {}
        for new in batch:
            counts[new.room_id] = counts.get(new.room_id, 0) + 1
        async with self.db.transaction() as tx:
            next_seq = await self._take_seqs(tx, counts)
            rows: list[Any] = []
            for n, new in enumerate(batch):
                seq = next_seq.get(new.room_id)
                if seq is None:
                    continue  # ended, or no such room: nothing stored
                next_seq[new.room_id] = seq + 1
                results[n] = RoomEvent(room_id=new.room_id, seq=seq, event=new.event,
                                       sender_id=new.sender_id, recipient_id=new.recipient_id,
                                       data=new.data, created_at=new.now)
                rows += (new.room_id, seq, new.event, new.sender_id, new.recipient_id,
                         new.data, new.now, new.client_id)
            if rows:
                await tx.execute(
                    f"INSERT INTO room_events ({_EVENT_COLUMNS}, client_id) VALUES "
                    + ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s)"] * (len(rows) // 8)),
                    tuple(rows))
        for n, new in enumerate(batch):
            if results[n] is None and new.client_id is not None:
                # The room has ended, but a resend of an event stored before is answered.
                results[n] = await self._event_of_key(new.sender_id, new.client_id)
        return results

    async def _take_seqs(self, tx: Executor, counts: dict[int, int]) -> dict[int, int]:
        """Take `counts[room]` more seqs of each room that has not ended; the first of each
        room's new seqs, by room. The row locks this takes order concurrent appends to a
        room. One room (the usual batch) is one round trip."""
        if len(counts) == 1:
            [(room, count)] = counts.items()
            last = await self._bump_seq(tx, room, count)
            return {} if last is None else {room: last - count + 1}
        rooms = sorted(counts)
        await tx.execute(
            "UPDATE rooms SET last_seq = last_seq + CASE id"
            + " WHEN %s THEN %s" * len(rooms)
            + f" END WHERE id IN ({_in_list(rooms)}) AND ended_at IS NULL",
            (*(value for room in rooms for value in (room, counts[room])), *rooms))
        rows = await tx.fetch_all(
            f"SELECT id, last_seq FROM rooms WHERE id IN ({_in_list(rooms)})"
            " AND ended_at IS NULL", tuple(rooms))
        return {int(room): int(last) - counts[int(room)] + 1 for room, last in rows}

    async def _bump_seq(self, tx: Executor, room_id: int, count: int) -> int | None:
        """Move the room's last seq on by `count` and return it, in one statement; None when
        the room has ended or does not exist."""
        if tx.dialect.update_returning:
            row = await tx.fetch_one(
                "UPDATE rooms SET last_seq = last_seq + %s WHERE id = %s AND ended_at IS NULL"
                " RETURNING last_seq", (count, room_id))
            return None if row is None else int(row[0])
        written = await tx.execute(
            "UPDATE rooms SET last_seq = LAST_INSERT_ID(last_seq + %s)"
            " WHERE id = %s AND ended_at IS NULL", (count, room_id))
        return written.lastrowid if written.rowcount == 1 else None

    @_retried
    async def _append_alone(self, new: _NewEvent, state: Sequence[StateWrite] = ()
                            ) -> RoomEvent | None:
        # No look for a resend first: resends are rare, and that look was a round trip of
        # every store. A resend's client id collides instead, and rolls its event back.
        try:
            if state or self.db.dialect.update_returning:
                async with self.db.transaction() as tx:
                    stored = await self._append(tx, new)
                    if stored is not None:
                        for write in state:
                            await self._write_state(tx, new.room_id, write, new.now)
            else:
                stored = await self._append_one_trip(new)
        except DuplicateKey:
            # A resend (or the same id sent twice at once, on two connections): its first
            # event, stored before.
            if new.client_id is None:
                raise
            first = await self._event_of_key(new.sender_id, new.client_id)
            if first is None:
                raise
            return first
        if stored is None and new.client_id is not None:
            # The room has ended, but a resend of an event stored before is still answered.
            return await self._event_of_key(new.sender_id, new.client_id)
        return stored

    async def _append_one_trip(self, new: _NewEvent) -> RoomEvent | None:
        """`_append` where the seq is LAST_INSERT_ID(expr) (MySQL): the seq's UPDATE and the
        event's INSERT are sent together, the INSERT taking the seq the UPDATE set. Its
        SELECT from the room repeats the UPDATE's condition, so when the room has ended
        (the UPDATE matched nothing and LAST_INSERT_ID() is an older value) it inserts
        nothing."""
        seq_taken, _ = await self.db.execute_together([
            ("UPDATE rooms SET last_seq = LAST_INSERT_ID(last_seq + 1)"
             " WHERE id = %s AND ended_at IS NULL", (new.room_id,)),
            (f"INSERT INTO room_events ({_EVENT_COLUMNS}, client_id)"
             " SELECT id, LAST_INSERT_ID(), %s, %s, %s, %s, %s, %s FROM rooms"
             " WHERE id = %s AND ended_at IS NULL",
             (new.event, new.sender_id, new.recipient_id, new.data, new.now, new.client_id,
              new.room_id)),
        ])
        if seq_taken.rowcount != 1 or seq_taken.lastrowid is None:
            return None
        return RoomEvent(room_id=new.room_id, seq=seq_taken.lastrowid, event=new.event,
                         sender_id=new.sender_id, recipient_id=new.recipient_id,
                         data=new.data, created_at=new.now)

    async def _event_of_key(self, sender_id: int, client_id: str) -> RoomEvent | None:
        found = await self.db.fetch_one(
            f"SELECT {_EVENT_COLUMNS} FROM room_events WHERE sender_id = %s AND client_id = %s",
            (sender_id, client_id))
        return _event(found) if found else None

    # -- idempotency keys of other requests (the JSON API's POSTs) ------------------------

    async def reserve_key(self, user_id: int, scope: str, key: str, now: datetime
                          ) -> str | None:
        """Claim `key` for a request about to run: None when it is new (the caller runs the
        request, then `answer_key` or `release_key`); else the first request's answer, ""
        while that one is still running."""
        try:
            await self.db.execute(
                "INSERT INTO idempotency_keys (user_id, scope, idem_key, answer, created_at)"
                " VALUES (%s, %s, %s, '', %s)", (user_id, scope, key, now))
        except DuplicateKey:
            row = await self.db.fetch_one(
                "SELECT answer FROM idempotency_keys WHERE user_id = %s AND scope = %s"
                " AND idem_key = %s", (user_id, scope, key))
            return "" if row is None else str(row[0])
        return None

    async def answer_key(self, user_id: int, scope: str, key: str, answer: str) -> None:
        await self.db.execute(
            "UPDATE idempotency_keys SET answer = %s WHERE user_id = %s AND scope = %s"
            " AND idem_key = %s", (answer, user_id, scope, key))

    async def release_key(self, user_id: int, scope: str, key: str) -> None:
        """The request failed: a retry with this key runs afresh."""
        await self.db.execute(
            "DELETE FROM idempotency_keys WHERE user_id = %s AND scope = %s AND idem_key = %s"
            " AND answer = ''", (user_id, scope, key))

    async def _append(self, tx: Executor, new: _NewEvent) -> RoomEvent | None:
        seq = await self._bump_seq(tx, new.room_id, 1)
        if seq is None:
            return None
        await tx.execute(
            f"INSERT INTO room_events ({_EVENT_COLUMNS}, client_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (new.room_id, seq, new.event, new.sender_id, new.recipient_id, new.data, new.now,
             new.client_id))
        return RoomEvent(room_id=new.room_id, seq=seq, event=new.event,
                         sender_id=new.sender_id, recipient_id=new.recipient_id,
                         data=new.data, created_at=new.now)

    async def stored_bytes_by_sender(self, room_id: int, events: Sequence[str]
                                     ) -> dict[tuple[int, bool], int]:
        """The UTF-8 bytes of event data each sender has stored in the room, apart for the
        `events` named and the rest: (sender id, one of `events`) -> bytes; a sender who
        stored nothing of a kind is absent."""
        size = "LENGTH(data)" if self.db.dialect.name == "mysql" else "LENGTH(CAST(data AS BLOB))"
        if events:
            kind = f"CASE WHEN event IN ({_in_list(events)}) THEN 1 ELSE 0 END"
            rows = await self.db.fetch_all(
                f"SELECT sender_id, {kind}, SUM({size}) FROM room_events WHERE room_id = %s"
                f" GROUP BY sender_id, {kind}", (*events, room_id, *events))
        else:
            rows = await self.db.fetch_all(
                f"SELECT sender_id, 0, SUM({size}) FROM room_events WHERE room_id = %s"
                " GROUP BY sender_id", (room_id,))
        return {(int(sender), bool(named)): int(total) for sender, named, total in rows}

    async def list_room_events(self, room_id: int, *, after: int,
                               limit: int = 1000) -> list[RoomEvent]:
        """Every event after seq `after`, private ones included, oldest first: for a chat
        server relaying what another process stored."""
        rows = await self.db.fetch_all(
            f"SELECT {_EVENT_COLUMNS} FROM room_events WHERE room_id = %s AND seq > %s"
            " ORDER BY seq LIMIT %s", (room_id, after, limit))
        return [_event(r) for r in rows]

    async def list_events(self, room_id: int, viewer_id: int, *, after: int = 0,
                          limit: int = 1000,
                          between: tuple[int, int] | None = None) -> list[RoomEvent]:
        """Events after seq `after` that `viewer_id` may see, oldest first: public ones and
        private ones they sent or received. `between` keeps only the private conversation of
        two users (the caller checks that the viewer is one of them)."""
        if between is not None:
            a, b = between
            where = ("((sender_id = %s AND recipient_id = %s)"
                     " OR (sender_id = %s AND recipient_id = %s))")
            params: list[Any] = [a, b, b, a]
        else:
            where = "(recipient_id IS NULL OR recipient_id = %s OR sender_id = %s)"
            params = [viewer_id, viewer_id]
        rows = await self.db.fetch_all(
            f"SELECT {_EVENT_COLUMNS} FROM room_events"
            f" WHERE room_id = %s AND seq > %s AND {where} ORDER BY seq LIMIT %s",
            (room_id, after, *params, limit),
        )
        return [_event(r) for r in rows]

    async def ban_from_room(self, room_id: int, user_id: int, now: datetime) -> None:
        await self.db.execute(
            f"{self.db.dialect.insert_ignore} INTO room_bans (room_id, user_id, banned_at)"
            " VALUES (%s, %s, %s)", (room_id, user_id, now))

    async def is_banned(self, room_id: int, user_id: int) -> bool:
        row = await self.db.fetch_one(
            "SELECT 1 FROM room_bans WHERE room_id = %s AND user_id = %s", (room_id, user_id))
        return row is not None

    async def role_and_ban(self, classroom_id: int, room_id: int, user_id: int
                           ) -> tuple[str | None, bool]:
        """`get_role` in the class and `is_banned` from the room, in one statement (a
        lecture's joins each asked both, each a round trip or a thread hop)."""
        row = await self.db.fetch_one(
            "SELECT m.role, (SELECT COUNT(*) FROM room_bans b"
            " WHERE b.room_id = %s AND b.user_id = %s)"
            " FROM memberships m WHERE m.classroom_id = %s AND m.user_id = %s",
            (room_id, user_id, classroom_id, user_id))
        return (str(row[0]), bool(row[1])) if row else (None, False)

    # -- attendance ----------------------------------------------------------------------

    async def _lock_room(self, tx: Executor, room_id: int) -> None:
        """Take the room's row lock first (MySQL), so the room's attendance writes run one
        at a time. Without it InnoDB deadlocks (error 1213) on concurrent joins and leaves
        of one user: the duplicate INSERT IGNORE takes a shared lock that the UPDATE after
        it must upgrade while another transaction waits for the row."""
        await tx.fetch_all("SELECT id FROM rooms WHERE id = %s" + tx.dialect.for_update,
                           (room_id,))

    async def attendance_join(self, room_id: int, user_id: int, now: datetime, *,
                              server: str = "") -> None:
        """One more open connection of this user to the room, held by chat server `server`
        (counted per server, so a crashed server's connections can be closed for it)."""
        await self.attendance_join_many(room_id, [user_id], now, server=server)

    @_retried
    async def attendance_join_many(self, room_id: int, user_ids: Sequence[int],
                                   now: datetime, *, server: str = "") -> None:
        """`attendance_join` for each of these (a user listed twice: two connections), in
        one transaction and a few statements for them all: a lecture's joins arrive
        together, and one transaction each queued them behind each other."""
        async with self.db.transaction() as tx:
            await self._lock_room(tx, room_id)
            pending = list(user_ids)
            while pending:
                # Each round counts one connection of each user in it.
                batch: list[int] = []
                later: list[int] = []
                for user_id in pending:
                    (later if user_id in batch or len(batch) >= JOIN_BATCH
                     else batch).append(user_id)
                pending = later
                marks = ", ".join(["%s"] * len(batch))
                if server:
                    await tx.execute(
                        f"{tx.dialect.insert_ignore} INTO open_connections (room_id, user_id,"
                        " server, connections) VALUES "
                        + ", ".join(["(%s, %s, %s, 0)"] * len(batch)),
                        [v for user_id in batch for v in (room_id, user_id, server)])
                    await tx.execute(
                        "UPDATE open_connections SET connections = connections + 1"
                        f" WHERE room_id = %s AND server = %s AND user_id IN ({marks})",
                        (room_id, server, *batch))
                await tx.execute(
                    f"{tx.dialect.insert_ignore} INTO attendance (room_id, user_id,"
                    " first_join, last_join, last_leave, seconds_connected, open_connections)"
                    " VALUES " + ", ".join(["(%s, %s, %s, %s, NULL, 0, 0)"] * len(batch)),
                    [v for user_id in batch for v in (room_id, user_id, now, now)])
                # last_join is assigned before open_connections changes: MySQL applies SET
                # clauses left to right, SQLite all at once; in this order both agree.
                await tx.execute(
                    "UPDATE attendance SET"
                    " last_join = CASE WHEN open_connections = 0 THEN %s ELSE last_join END,"
                    " open_connections = open_connections + 1"
                    f" WHERE room_id = %s AND user_id IN ({marks})",
                    (now, room_id, *batch))

    async def attendance_leave(self, room_id: int, user_id: int, now: datetime, *,
                               server: str = "") -> None:
        """One open connection fewer; the time connected grows when the last one closes."""
        await self.attendance_leave_many([Departure(room_id, user_id, now, server)])

    @_retried
    async def attendance_leave_many(self, departures: Sequence[Departure]) -> None:
        """`attendance_leave` for each departure, one after the other in list order, each
        with its own time, in one transaction of a few statements for them all (the end
        of a lecture is thousands of departures at once, and one transaction each held the
        database's connections from everyone else's events).

        Per departure, as alone: with a server, the connection is that server's (none left
        there: cleared already, the server was taken for dead, and nothing changes); the
        user's last open connection closing ends their attendance at its time, or at their
        last join if that is later (a departure recorded late never precedes its arrival);
        a user without open connections is left as they are."""
        if not departures:
            return
        rooms = sorted({d.room_id for d in departures})
        users = sorted({d.user_id for d in departures})
        servers = sorted({d.server for d in departures if d.server})
        async with self.db.transaction() as tx:
            # Every attendance write takes its room's row lock first (see _lock_room); these
            # rooms' are taken in id order, as _append_together takes them.
            for page in _pages(rooms):
                await tx.fetch_all(f"SELECT id FROM rooms WHERE id IN ({_in_list(page)})"
                                   " ORDER BY id" + tx.dialect.for_update, page)
            held: dict[tuple[int, int, str], int] = {}
            attendance: dict[tuple[int, int], list[Any]] = {}
            for room_page in _pages(rooms):
                for user_page in _pages(users):
                    where = (f" WHERE room_id IN ({_in_list(room_page)})"
                             f" AND user_id IN ({_in_list(user_page)})")
                    if servers:
                        for room_id, user_id, server, connections in await tx.fetch_all(
                                "SELECT room_id, user_id, server, connections"
                                f" FROM open_connections{where}"
                                f" AND server IN ({_in_list(servers)})" + tx.dialect.for_update,
                                (*room_page, *user_page, *servers)):
                            held[(int(room_id), int(user_id), str(server))] = int(connections)
                    for row in await tx.fetch_all(
                            "SELECT room_id, user_id, last_join, last_leave, seconds_connected,"
                            f" open_connections FROM attendance{where}" + tx.dialect.for_update,
                            (*room_page, *user_page)):
                        attendance[(int(row[0]), int(row[1]))] = [
                            row[2], row[3], float(row[4]), int(row[5])]
            gone: set[tuple[int, int, str]] = set()
            fewer: set[tuple[int, int, str]] = set()
            changed: set[tuple[int, int]] = set()
            for d in departures:
                if d.server:
                    key = (d.room_id, d.user_id, d.server)
                    connections = held.get(key, 0)
                    if connections <= 0:
                        continue  # cleared already (or left by a departure before this one)
                    held[key] = connections - 1
                    (gone if connections <= 1 else fewer).add(key)
                record = attendance.get((d.room_id, d.user_id))
                if record is None or record[3] <= 0:
                    continue
                record[3] -= 1
                if record[3] == 0:
                    record[1], seconds = _closed(record[0], d.at)
                    record[2] += seconds
                changed.add((d.room_id, d.user_id))
            await self._write_leaves(tx, held, gone, fewer - gone, attendance, changed)

    async def _write_leaves(self, tx: Executor, held: dict[tuple[int, int, str], int],
                            gone: set[tuple[int, int, str]],
                            fewer: set[tuple[int, int, str]],
                            attendance: dict[tuple[int, int], list[Any]],
                            changed: set[tuple[int, int]]) -> None:
        """attendance_leave_many's outcome, a statement per page of rows."""
        by_room_server: dict[tuple[int, str], list[int]] = {}
        for room_id, user_id, server in sorted(gone):
            by_room_server.setdefault((room_id, server), []).append(user_id)
        for (room_id, server), user_ids in by_room_server.items():
            for page in _pages(user_ids):
                await tx.execute(
                    "DELETE FROM open_connections WHERE room_id = %s AND server = %s"
                    f" AND user_id IN ({_in_list(page)})", (room_id, server, *page))
        for keys in _pages(sorted(fewer)):
            await tx.execute(
                "REPLACE INTO open_connections (room_id, user_id, server, connections) VALUES "
                + ", ".join(["(%s, %s, %s, %s)"] * len(keys)),
                [v for key in keys for v in (*key, held[key])])
        by_room: dict[int, list[int]] = {}
        for room_id, user_id in sorted(changed):
            by_room.setdefault(room_id, []).append(user_id)
        for room_id, user_ids in by_room.items():
            for page in _pages(user_ids):
                records = [(user_id, attendance[(room_id, user_id)]) for user_id in page]
                whens = " WHEN %s THEN %s" * len(page)
                await tx.execute(
                    f"UPDATE attendance SET last_leave = CASE user_id{whens} END,"
                    f" seconds_connected = CASE user_id{whens} END,"
                    f" open_connections = CASE user_id{whens} END"
                    f" WHERE room_id = %s AND user_id IN ({_in_list(page)})",
                    [*(v for user_id, r in records for v in (user_id, r[1])),
                     *(v for user_id, r in records for v in (user_id, r[2])),
                     *(v for user_id, r in records for v in (user_id, r[3])),
                     room_id, *page])

    # -- chat servers' leases: a dead server's connections end --------------------------

    async def renew_lease(self, server: str, now: datetime, until: datetime) -> None:
        """`server` is alive at `now` and holds its connections until `until`."""
        written = await self.db.execute(
            "UPDATE chat_servers SET renewed_at = %s, lease_until = %s WHERE name = %s",
            (now, until, server))
        if written.rowcount == 0:
            await self.db.execute(
                f"{self.db.dialect.insert_ignore} INTO chat_servers (name, renewed_at,"
                " lease_until) VALUES (%s, %s, %s)", (server, now, until))

    async def lapsed_servers(self, now: datetime) -> list[str]:
        """Servers whose lease ran out (crashed, or cut off from the database), and servers
        that hold connections without any lease."""
        rows = await self.db.fetch_all(
            "SELECT name FROM chat_servers WHERE lease_until < %s"
            " UNION SELECT DISTINCT o.server FROM open_connections o"
            " LEFT JOIN chat_servers s ON s.name = o.server WHERE s.name IS NULL", (now,))
        return [str(r[0]) for r in rows]

    @_retried
    async def clear_server(self, server: str, now: datetime) -> int:
        """End every connection `server` held, as of its last renewal (a crash is not
        seen sooner; `now` if it never renewed), and forget its lease. Returns how many
        (room, user) records it held."""
        async with self.db.transaction() as tx:
            lease = await tx.fetch_one(
                "SELECT renewed_at FROM chat_servers WHERE name = %s" + tx.dialect.for_update,
                (server,))
            at = lease[0] if lease is not None else now
            held = await tx.fetch_all(
                "SELECT room_id, user_id, connections FROM open_connections WHERE server = %s"
                " ORDER BY room_id, user_id", (server,))
            for room_id, user_id, connections in held:
                await self._lock_room(tx, room_id)
                await self._leave(tx, room_id, user_id, at, close_all=False,
                                  count=int(connections))
            await tx.execute("DELETE FROM open_connections WHERE server = %s", (server,))
            await tx.execute("DELETE FROM chat_servers WHERE name = %s", (server,))
            return len(held)

    async def _leave(self, tx: Executor, room_id: int, user_id: int, now: datetime, *,
                     close_all: bool, count: int = 1) -> None:
        row = await tx.fetch_one(
            "SELECT last_join, open_connections FROM attendance"
            " WHERE room_id = %s AND user_id = %s" + tx.dialect.for_update,
            (room_id, user_id))
        if row is None or row[1] <= 0:
            return
        last_join, open_connections = row
        remaining = 0 if close_all else max(0, open_connections - count)
        if remaining == 0:
            left, seconds = _closed(last_join, now)
            await tx.execute(
                "UPDATE attendance SET open_connections = 0, last_leave = %s,"
                " seconds_connected = seconds_connected + %s"
                " WHERE room_id = %s AND user_id = %s",
                (left, seconds, room_id, user_id))
        else:
            await tx.execute(
                "UPDATE attendance SET open_connections = %s WHERE room_id = %s AND user_id = %s",
                (remaining, room_id, user_id))

    async def list_attendance(self, room_id: int) -> list[Attendance]:
        rows = await self.db.fetch_all(
            f"SELECT a.room_id, {_USER_COLUMNS}, a.first_join, a.last_join, a.last_leave,"
            " a.seconds_connected, a.open_connections FROM attendance a"
            " JOIN users u ON u.id = a.user_id WHERE a.room_id = %s ORDER BY a.first_join, u.id",
            (room_id,),
        )
        return [Attendance(room_id=r[0], user=_user(r, 1), first_join=r[5], last_join=r[6],
                           last_leave=r[7], seconds_connected=float(r[8]),
                           open_connections=int(r[9])) for r in rows]

    # -- room state (steps, settings, statuses) ------------------------------------------

    async def set_state(self, room_id: int, user_id: int, name: str, value: str,
                        now: datetime) -> None:
        """Replace one value (user 0: the room's own)."""
        await self._write_state(self.db, room_id, StateWrite(user_id, name, value), now)

    async def clear_state(self, room_id: int, name: str) -> None:
        """Forget a value for every user of the room."""
        await self.db.execute(_CLEAR_STATE, (room_id, name))

    async def _write_state(self, ex: Executor, room_id: int, write: StateWrite,
                           now: datetime) -> None:
        if write.value is None:
            await ex.execute(_CLEAR_STATE, (room_id, write.name))
        else:
            await ex.execute(_REPLACE_STATE, (room_id, write.user_id, write.name, write.value,
                                              now))

    async def list_state(self, room_id: int, name: str) -> list[StateValue]:
        rows = await self.db.fetch_all(
            "SELECT room_id, user_id, name, value, updated_at FROM room_state"
            " WHERE room_id = %s AND name = %s ORDER BY user_id", (room_id, name))
        return [StateValue(*r) for r in rows]

    async def list_room_state(self, room_id: int, *, owners: Sequence[int] | None = None,
                              skip: Sequence[str] = ()) -> list[StateValue]:
        """Every value of a room in one query: of the `owners` only (user 0 is the room's
        own), leaving out the names in `skip` (large values a caller does not need)."""
        sql = ("SELECT room_id, user_id, name, value, updated_at FROM room_state"
               " WHERE room_id = %s")
        params: list[Any] = [room_id]
        if owners is not None:
            sql += f" AND user_id IN ({', '.join(['%s'] * len(owners))})"
            params += list(owners)
        if skip:
            sql += f" AND name NOT IN ({', '.join(['%s'] * len(skip))})"
            params += list(skip)
        rows = await self.db.fetch_all(sql + " ORDER BY user_id, name", tuple(params))
        return [StateValue(*r) for r in rows]

    async def get_state(self, room_id: int, user_id: int, name: str) -> str | None:
        row = await self.db.fetch_one(
            "SELECT value FROM room_state WHERE room_id = %s AND name = %s AND user_id = %s",
            (room_id, name, user_id))
        return None if row is None else str(row[0])
