"""Departures during a database outage: a member who leaves while the database is down still
has their attendance closed, with the time they left, once it is back."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Final

import trio

from classroom import Room, Services, User
from classroom.errors import ClassroomError

log = logging.getLogger("chat.departures")
# Seconds between attempts to write departures the database missed.
RETRY_INTERVAL: Final = 2.0


class Departures:
    def __init__(self, services: Services) -> None:
        self._services = services
        # (room, user, when) the database was down for, oldest first.
        self._unrecorded: list[tuple[Room, User, datetime, str]] = []

    async def record(self, room: Room, user: User, server: str) -> None:
        """Close `user`'s attendance in `room` (one connection, held by `server`) now, or
        later if the database is down. Shielded: a departure is recorded even when the
        connection is being cancelled."""
        departure = (room, user, self._services.clock(), server)
        with trio.CancelScope(shield=True):
            try:
                await self._services.rooms.departed(*departure)
            except ClassroomError as exc:
                log.warning("attendance of user %s in room %s not recorded yet: %s",
                            user.id, room.id, exc.message)
                self._unrecorded.append(departure)

    async def flush(self) -> None:
        """Write the departures the database missed, with their own times. Raises
        ClassroomError while it is still down."""
        while self._unrecorded:
            await self._services.rooms.departed(*self._unrecorded[0])
            self._unrecorded.pop(0)

    async def retry(self, *, interval: float = RETRY_INTERVAL) -> None:
        while True:
            await trio.sleep(interval)
            try:
                await self.flush()
            except ClassroomError as exc:
                log.warning("%d departures still not recorded: %s", len(self._unrecorded),
                            exc.message)
