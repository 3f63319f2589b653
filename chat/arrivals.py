"""Attendance of arrivals, written together: a join's attendance is recorded before its
answer (whoever sees the join sees the attendance), and a lecture's joins come together, so
the joins waiting meanwhile are written in one transaction (`Rooms.arrived_many`) as soon as
the one before is done: group commit. One transaction per join queued each behind the other
on the database (SQLite has one writer; MySQL the room's row lock) and made a join storm's
answers wait seconds.

Invariants:
- `record` returns once the arrival is committed, or raises what the write raised;
- an arrival whose joiner is cancelled before its batch is taken is not written; one whose
  batch is being written is waited for (shielded) before the cancellation goes on, so the
  departure recorded after it never precedes it; `written` is called (in the joiner's task)
  once the arrival is known to be stored, whether the joiner was cancelled or not;
- the departures noted before a round of batches is taken are written before it (`before`,
  see departures.py); if they cannot be, the round's arrivals fail too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import attrs
import trio

from classroom import Room, Services, User
from classroom.errors import ClassroomError, Unavailable

log = logging.getLogger("chat.arrivals")


@attrs.define(eq=False)
class _Batch:
    room: Room
    server: str
    user_ids: list[int] = attrs.field(factory=list)
    taken: bool = False
    done: trio.Event = attrs.field(factory=trio.Event)
    error: ClassroomError | None = None


class Arrivals:
    def __init__(self, services: Services, *,
                 before: Callable[[], Awaitable[bool]] | None = None) -> None:
        self._services = services
        self._pending: dict[int, _Batch] = {}
        self._wake = trio.Event()
        self._before = before

    async def record(self, room: Room, user: User, server: str,
                     written: Callable[[], None] | None = None) -> None:
        """One connection of `user`, held by chat server `server`, joined `room`; returns
        once that is stored. `written` is called once it is, even if the caller is
        cancelled meanwhile."""
        batch = self._pending.get(room.id)
        if batch is None:
            batch = self._pending[room.id] = _Batch(room, server)
        batch.user_ids.append(user.id)
        self._wake.set()
        try:
            await batch.done.wait()
        except trio.Cancelled:
            if not batch.taken:
                batch.user_ids.remove(user.id)
            else:
                with trio.CancelScope(shield=True):
                    await batch.done.wait()
                if batch.error is None and written is not None:
                    written()
            raise
        if batch.error is not None:
            raise Unavailable(batch.error.message) from batch.error
        if written is not None:
            written()

    async def run(self) -> None:
        """Write the waiting batches, each as soon as the one before is done."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            batches, self._pending = list(self._pending.values()), {}
            for batch in batches:
                batch.taken = True
            with trio.CancelScope(shield=True):
                # Whoever left before these joins is written first (a user reconnecting
                # leaves, then arrives); while that fails the database is down for these too.
                departed = self._before is None or await self._before()
                for batch in batches:
                    try:
                        if not departed:
                            raise Unavailable("the database is unavailable; retry shortly")
                        await self._services.rooms.arrived_many(
                            batch.room, batch.user_ids, batch.server)
                    except ClassroomError as exc:
                        batch.error = exc
                    except Exception:
                        # A bug must cost these joins, not the server (this task is every
                        # room's).
                        log.exception("attendance of %d joins in room %s failed",
                                      len(batch.user_ids), batch.room.id)
                        batch.error = Unavailable("attendance could not be recorded")
                    finally:
                        batch.done.set()
