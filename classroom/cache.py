"""A small per-process cache of what nearly every request reads: whose a session token is,
and per class its record, its members' roles, its posts and tags, and what `web/` derives
from them (rendered HTML, encoded JSON).

Correct across app servers, with a stated bound:
- Every write that changes something cached logs (scope, key_id) in `cache_changes` inside
  its own transaction (storage/store.py's docstring says how; `Storage.changed` is the call
  for new writes: a post edited or deleted, a class archived, a student removed). `follow`
  reads the new rows every POLL_INTERVAL and drops what each names; this process's own
  writes drop their entries at once, through storage's change listener.
- STALE_AFTER (2 s) bounds staleness: entries are used only while the last poll that
  completed *began* less than STALE_AFTER ago. A change committed at T is read by every poll
  that begins after T, so from T + STALE_AFTER on no request is answered from an entry older
  than it: a logout, a removed student or an edited post is seen by every process within
  2 s (as chat servers relay each other's events and check sign-ins every 2 s). When the
  database cannot be polled in time, nothing is served from the cache. Why not less: under
  full load a poll can take half a second of event-loop turns, and a cache that keeps
  switching off sends every request to the database at once.
- A fill can race an invalidation (read the old row, the change is applied, then store the
  old row). So a fill carries the `stamp` taken before its read and is not stored if any
  invalidation was applied since.
- MySQL hands out AUTO_INCREMENT ids before commit, so a row can become visible after a
  larger id was read. Each poll therefore re-reads the ids of the last LOOKBACK seconds and
  applies those it has not seen (the log insert is the last statement before its COMMIT).
- Only positive answers are kept (a live session, a member's role, a class that exists): an
  unknown token or a non-member goes to the database every time, so signing in or joining
  needs no invalidation and made-up tokens cannot fill the cache. Sizes are bounded; the
  oldest entries go first.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Hashable
from datetime import datetime
from typing import Any, Final, TypeVar

import trio

from storage import CHANGE_CLASSROOM, CHANGE_USER, Storage, StorageError, User

__all__ = ["MISSING", "STALE_AFTER", "Cache"]

log = logging.getLogger("classroom.cache")

POLL_INTERVAL: Final = 0.2
STALE_AFTER: Final = 2.0
LOOKBACK: Final = 5.0
READY_WAIT: Final = 0.5
# Rows read per poll; more than this at once (a flood of writes): forget everything instead.
MAX_ROWS: Final = 5000
# Ids below the newest at start-up still read, for transactions committing meanwhile.
START_LOOKBACK_IDS: Final = 1000
MAX_SESSIONS: Final = 20_000
MAX_CLASSES: Final = 1000
MAX_ENTRIES_PER_CLASS: Final = 200
# Members' roles are kept apart from the class's other values: a class's members outnumber
# the rest, and sharing one bound would evict the class's pages in turn.
MAX_ROLES_PER_CLASS: Final = 5000

MISSING: Final[Any] = object()
T = TypeVar("T")


class Cache:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._reader = storage
        self._sessions: dict[str, tuple[User, datetime]] = {}
        self._user_sessions: dict[int, set[str]] = {}
        self._classes: dict[int, dict[Hashable, Any]] = {}
        self._roles: dict[int, dict[int, str]] = {}
        self._loading: dict[tuple[int, Hashable], trio.Event] = {}
        self._following = False
        self._polled = trio.Event()
        self._stamp = 0
        self._fresh_until = -float("inf")
        self._floor: int | None = None
        self._seen: set[int] = set()
        self._history: deque[tuple[float, int]] = deque()
        self._sessions_dropped: list[Callable[[], None]] = []
        self._class_dropped: list[Callable[[int | None], None]] = []
        storage.add_change_listener(self.drop)

    # -- reading and filling -------------------------------------------------------------

    def fresh(self) -> bool:
        return trio.current_time() < self._fresh_until

    async def ready(self) -> None:
        """At once while the cache serves. When its poll is late, wait (up to READY_WAIT)
        for that poll: under a load that delays polls, a few milliseconds of waiting per
        request cost far less than every request going to the database at once."""
        if self._following and not self.fresh():
            with trio.move_on_after(READY_WAIT):
                await self._polled.wait()

    def stamp(self) -> int:
        """Take before reading what will be kept; pass to `keep_*`."""
        return self._stamp

    def session(self, token_hash: str, now: datetime) -> User | None:
        entry = self._sessions.get(token_hash) if self.fresh() else None
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    def unknown_sessions(self, token_hashes: Collection[str], now: datetime) -> list[str]:
        """Those of these sessions the cache cannot vouch for as live now (all of them
        while it does not serve): what `session` would answer None for."""
        if not self.fresh():
            return list(token_hashes)
        sessions = self._sessions
        return [token_hash for token_hash in token_hashes
                if (entry := sessions.get(token_hash)) is None or entry[1] <= now]

    def on_class_dropped(self, listener: Callable[[int | None], None]) -> None:
        """Call `listener(classroom_id)` whenever what is kept of a class is forgotten
        because it (may) have changed, `listener(None)` when everything is."""
        self._class_dropped.append(listener)

    def on_sessions_dropped(self, listener: Callable[[], None]) -> None:
        """Call `listener()` whenever kept sessions are forgotten because they (may) have
        ended: a user's change read from the log or made here, or the whole cache going."""
        self._sessions_dropped.append(listener)

    def keep_session(self, stamp: int, token_hash: str, user: User, expires_at: datetime
                     ) -> None:
        if stamp != self._stamp or not self.fresh():
            return
        if len(self._sessions) >= MAX_SESSIONS:
            oldest = next(iter(self._sessions))
            self._forget_session(oldest)
        self._sessions[token_hash] = (user, expires_at)
        self._user_sessions.setdefault(user.id, set()).add(token_hash)

    def role(self, classroom_id: int, user_id: int) -> str | None:
        """A member's role kept for the class, or None (not kept, or not a member)."""
        roles = self._roles.get(classroom_id) if self.fresh() else None
        return None if roles is None else roles.get(user_id)

    def keep_role(self, stamp: int, classroom_id: int, user_id: int, role: str) -> None:
        if stamp == self._stamp and self.fresh():
            _keep_bounded(self._roles, classroom_id, user_id, role, MAX_ROLES_PER_CLASS)

    def class_value(self, classroom_id: int, key: Hashable) -> Any:
        """What was kept under `key` for the class, or MISSING."""
        if not self.fresh():
            return MISSING
        values = self._classes.get(classroom_id)
        return MISSING if values is None else values.get(key, MISSING)

    def keep_class_value(self, stamp: int, classroom_id: int, key: Hashable, value: Any
                         ) -> None:
        if stamp == self._stamp and self.fresh():
            _keep_bounded(self._classes, classroom_id, key, value, MAX_ENTRIES_PER_CLASS)

    async def class_memo(self, classroom_id: int, key: Hashable,
                         load: Callable[[], Awaitable[T]]) -> T:
        """`load()`'s value, kept for the class under `key` until the class changes. The
        caller checks permissions first: a hit runs no code of `load`."""
        found = self.class_value(classroom_id, key)
        if found is not MISSING:
            return found  # type: ignore[no-any-return]
        # One load per key at a time: a page many members open at once (or all of them
        # right after a change) costs the database one read, not one per member.
        loading = self._loading.get((classroom_id, key))
        if loading is not None:
            await loading.wait()
            found = self.class_value(classroom_id, key)
            if found is not MISSING:
                return found  # type: ignore[no-any-return]
        done = self._loading[(classroom_id, key)] = trio.Event()
        try:
            stamp = self.stamp()
            value = await load()
            self.keep_class_value(stamp, classroom_id, key, value)
        finally:
            if self._loading.get((classroom_id, key)) is done:
                del self._loading[(classroom_id, key)]
            done.set()
        return value

    # -- invalidation --------------------------------------------------------------------

    def drop(self, scope: str, key_id: int) -> None:
        """Forget what depends on (scope, key_id); unknown scopes forget everything."""
        self._stamp += 1
        if scope == CHANGE_USER:
            dropped = self._user_sessions.pop(key_id, set())
            for token_hash in dropped:
                self._sessions.pop(token_hash, None)
            if dropped:
                self._tell_sessions_dropped()
        elif scope == CHANGE_CLASSROOM:
            self._classes.pop(key_id, None)
            self._roles.pop(key_id, None)
            for listener in self._class_dropped:
                listener(key_id)
        else:
            self._clear()

    def _forget_session(self, token_hash: str) -> None:
        user, _ = self._sessions.pop(token_hash)
        tokens = self._user_sessions.get(user.id)
        if tokens is not None:
            tokens.discard(token_hash)
            if not tokens:
                del self._user_sessions[user.id]

    def _clear(self) -> None:
        self._stamp += 1
        had_sessions = bool(self._sessions)
        self._sessions.clear()
        self._user_sessions.clear()
        self._classes.clear()
        self._roles.clear()
        if had_sessions:
            self._tell_sessions_dropped()
        for listener in self._class_dropped:
            listener(None)

    def _tell_sessions_dropped(self) -> None:
        for listener in self._sessions_dropped:
            listener()

    async def follow(self, *, log_reader: Storage | None = None,
                     task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read the change log forever (through `log_reader`, default the cache's storage);
        the cache serves only while this runs."""
        self._reader = log_reader or self._storage
        self._following = True
        try:
            task_status.started()
            await self._follow()
        finally:
            self._following = False
            self._polled.set()

    async def _follow(self) -> None:
        failing = False
        while True:
            began = trio.current_time()
            try:
                await self._poll(began)
            except StorageError as exc:
                self._fresh_until = -float("inf")
                self._clear()
                if not failing:
                    log.warning("cache off until the database answers: %s", exc)
                failing = True
            else:
                if trio.current_time() > self._fresh_until:
                    log.debug("cache was off: the poll took %.3f s",
                              trio.current_time() - began)
                self._fresh_until = began + STALE_AFTER
                failing = False
            self._polled.set()
            self._polled = trio.Event()
            await trio.sleep(POLL_INTERVAL)

    async def _poll(self, now: float) -> None:
        if self._floor is None:
            newest = await self._reader.last_change_id()
            self._floor = max(0, newest - START_LOOKBACK_IDS)
            self._seen = {row[0] for row in await self._reader.changes_after(
                self._floor, MAX_ROWS)}
            self._history.append((now, newest))
            return
        rows = await self._reader.changes_after(self._floor, MAX_ROWS)
        newest = self._history[-1][1] if self._history else self._floor
        for change_id, scope, key_id in rows:
            if change_id not in self._seen:
                self._seen.add(change_id)
                self.drop(scope, key_id)
            newest = max(newest, change_id)
        if len(rows) == MAX_ROWS:
            self._clear()
            self._floor, self._seen, self._history = newest, set(), deque()
        self._history.append((now, newest))
        while self._history and self._history[0][0] <= now - LOOKBACK:
            self._floor = max(self._floor, self._history.popleft()[1])
        self._seen = {change_id for change_id in self._seen if change_id > self._floor}


def _keep_bounded(by_class: dict[int, dict[Any, Any]], classroom_id: int, key: Hashable,
                  value: Any, per_class: int) -> None:
    """`by_class[classroom_id][key] = value`, at most MAX_CLASSES classes and `per_class`
    entries in each: the oldest class, or the class's oldest entry, makes room."""
    entries = by_class.get(classroom_id)
    if entries is None:
        if len(by_class) >= MAX_CLASSES:
            del by_class[next(iter(by_class))]
        entries = by_class[classroom_id] = {}
    elif len(entries) >= per_class:
        del entries[next(iter(entries))]
    entries[key] = value
