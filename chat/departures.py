"""Attendance of departures, written together: a connection that leaves a room notes the
time and goes on at once; one task writes the departures noted meanwhile in one transaction
(`Rooms.departed_many`), as soon as the one before is done: group commit, as for arrivals
(arrivals.py). The end of a lecture is thousands of departures at once, and one transaction
each (six statements) held the database's pooled connections from every other room's events,
and a task step per statement of each from every other client.

Invariants:
- a departure is noted only once its arrival is stored (the hub sees to it: see
  `RoomHub.detach`), and is written with the time it was noted, however late;
- departures are written in the order noted, each as if alone (Storage.attendance_leave_many);
- every departure noted before a batch of arrivals is taken is written before that batch
  (`Arrivals` calls `write` first): a user who reconnects leaves before they come back;
- while the database is down the departures wait, in order, and are written with their own
  times once it is back; those noted meanwhile are written after them;
- at shutdown the chat server writes what is left (`write`) before it returns;
- `room/leave` is answered once its departure is written (`write`), as a join is answered
  once its arrival is: whoever sees the answer sees the attendance. A closed connection
  has nobody to answer and waits for nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Final

import attrs
import trio

from classroom import Room, Services, User
from classroom.errors import ClassroomError

log = logging.getLogger("chat.departures")
# Seconds between attempts to write departures the database missed.
RETRY_INTERVAL: Final = 2.0


@attrs.frozen
class Left:
    """One connection of `user_id`, held by chat server `server`, left `room` `at`."""

    room: Room
    user_id: int
    at: datetime
    server: str


class Departures:
    def __init__(self, services: Services) -> None:
        self._services = services
        # Noted, not yet taken into a batch, oldest first.
        self._pending: list[Left] = []
        # Taken, and missed by the database (it was down): written again before the rest.
        self._unrecorded: list[Left] = []
        self._wake = trio.Event()
        self._writing = trio.Lock()

    def record(self, room: Room, user: User, server: str) -> None:
        """One connection of `user`, held by chat server `server`, left `room` now: written
        soon (see `run`), or once the database is back."""
        self._pending.append(Left(room, user.id, self._services.clock(), server))
        self._wake.set()

    async def write(self) -> bool:
        """Write every departure noted so far (after those the database missed): True once
        they are stored (or there were none), False while the database is down. Shielded:
        a batch taken is written whatever happens to the caller."""
        async with self._writing:
            if not self._pending and not self._unrecorded:
                return True
            batch = self._unrecorded + self._pending
            self._unrecorded, self._pending = [], []
            with trio.CancelScope(shield=True):
                try:
                    await self._services.rooms.departed_many(
                        [(left.room, left.user_id, left.at, left.server) for left in batch])
                except ClassroomError as exc:
                    self._unrecorded = batch
                    log.warning("%d departures not recorded yet: %s", len(batch), exc.message)
                    return False
                except Exception:
                    # A bug: these are lost (the server's lease ends them, see lease.py),
                    # rather than tried again forever.
                    log.exception("%d departures could not be recorded", len(batch))
            return True

    async def run(self, *, interval: float = RETRY_INTERVAL) -> None:
        """Write the departures noted, each batch as soon as the one before is done; while
        the database is down, again every `interval` seconds."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            if not await self.write():
                await trio.sleep(interval)
                self._wake.set()
