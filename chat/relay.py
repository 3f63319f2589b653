"""Relay between chat servers: events other processes stored in rooms this server hosts
reach its members, in seq order, and rooms ended elsewhere (the instructor's End button on an
app server) are noticed.

The database is the relay: every `SYNC_INTERVAL` seconds each hosted room is compared with
its stored `last_seq`, and before this server sends an event of its own it first sends what
others stored before it (`catch_up`). A faster relay (a message bus) keeps this shape:
`catch_up` under the room's lock, `follow` as the background task.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final, Protocol

import trio

from classroom import Services
from classroom.errors import ClassroomError

if TYPE_CHECKING:
    from .fanout import LiveRoom

log = logging.getLogger("chat.relay")
# Seconds between looks at the database for events and ends from other processes.
SYNC_INTERVAL: Final = 2.0


class HostedRooms(Protocol):
    """What the relay needs of the registry (hub.py)."""

    def hosted(self) -> list[LiveRoom]: ...

    async def ended(self, live: LiveRoom) -> None:
        """The room ended elsewhere: everyone here leaves it."""


class Relay:
    def __init__(self, services: Services) -> None:
        self._services = services

    async def catch_up(self, live: LiveRoom, seq: int) -> None:
        """Deliver events other processes stored in this room before `seq` (ours), which
        this server has not relayed yet, so members get the room's events in seq order.
        Called with the room's lock held."""
        while live.last_seq < seq - 1:
            missed = [e for e in await self._services.rooms.stored_since(live.id, live.last_seq)
                      if e.seq < seq]
            if not missed:
                break
            for event in missed:
                live.deliver_event(event)
                live.last_seq = event.seq

    async def sync(self, live: LiveRoom, rooms: HostedRooms) -> None:
        room = await self._services.rooms.reload(live.id)
        if room is None:
            return
        async with live.lock:
            with trio.CancelScope(shield=True):
                await self.catch_up(live, room.last_seq + 1)
                live.room = room
        if not room.is_open:
            await rooms.ended(live)

    async def follow(self, rooms: HostedRooms, *, interval: float = SYNC_INTERVAL) -> None:
        """Every `interval` seconds, relay what other processes stored in our rooms."""
        while True:
            await trio.sleep(interval)
            for live in rooms.hosted():
                try:
                    await self.sync(live, rooms)
                except ClassroomError as exc:
                    log.warning("room %s: cannot sync with the database: %s", live.id,
                                exc.message)
