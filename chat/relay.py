"""Relay between chat servers: events other processes stored in rooms this server hosts
reach its members, in seq order, and rooms ended elsewhere (the instructor's End button on an
app server) are noticed.

With a bus (`--bus`), every stored event is announced on it (classroom/rooms.py) and
`received` delivers it here in seq order: an event whose seq is not the next one first has
the gap filled from the database (`catch_up`), and an event already sent is ignored. Nothing
polls while the bus is up. When this server's subscription is lost (`bus_down`), or a gap
could not be filled (the database was down too), `follow` reads the database every
`SYNC_INTERVAL` seconds instead, and every (re)subscription (`bus_up`) catches up all hosted
rooms once, so what was published while the bus was away is not missed.

Without a bus the database is the only relay: every `SYNC_INTERVAL` seconds each hosted room
is compared with its stored `last_seq`. Either way, before this server sends an event of its
own it first sends what others stored before it (`catch_up`, under the room's lock).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final, Protocol

import attrs
import trio

from classroom import RoomEvent, Services
from classroom.bus import OFF
from classroom.errors import ClassroomError

from . import metrics

if TYPE_CHECKING:
    from .fanout import LiveRoom

log = logging.getLogger("chat.relay")
# Seconds between looks at the database for events and ends from other processes (always
# without a bus; with one only while it is down or a gap is waiting to be filled).
SYNC_INTERVAL: Final = 2.0


class HostedRooms(Protocol):
    """What the relay needs of the registry (hub.py)."""

    def hosted(self) -> list[LiveRoom]: ...

    def live(self, room_id: int) -> LiveRoom | None: ...

    async def ended(self, live: LiveRoom) -> None:
        """The room ended elsewhere: everyone here leaves it."""


class Relay:
    def __init__(self, services: Services) -> None:
        self._services = services
        self.bus_wanted = services.bus.state != OFF
        self._bus_up = False
        # Rooms a bus event could not be delivered to in order (the gap fill failed).
        self._stale: set[int] = set()
        self._wake = trio.Event()

    @property
    def bus_live(self) -> bool:
        """Other servers' events reach this one through the bus right now."""
        return self.bus_wanted and self._bus_up

    async def catch_up(self, live: LiveRoom, seq: int) -> None:
        """Deliver events other processes stored in this room before `seq`, which this
        server has not relayed yet, so members get the room's events in seq order.
        Called with the room's lock held."""
        if live.last_seq < seq - 1 and self.bus_live:
            metrics.GAP_FILLS.inc()
        while live.last_seq < seq - 1:
            missed = [e for e in await self._services.rooms.stored_since(live.id, live.last_seq)
                      if e.seq < seq]
            if not missed:
                break
            for event in missed:
                await live.deliver_event(event)
                live.last_seq = event.seq
            metrics.EVENTS_DELIVERED.labels("database").inc(len(missed))

    async def received(self, event: RoomEvent, rooms: HostedRooms) -> None:
        """An event another server stored and announced on the bus."""
        live = rooms.live(event.room_id)
        if live is None or event.seq <= live.last_seq:
            return  # not hosted here, or sent already (read from the database meanwhile)
        async with live.lock:
            with trio.CancelScope(shield=True):
                try:
                    await self.catch_up(live, event.seq)
                except ClassroomError as exc:
                    log.warning("room %s: cannot fill a gap before seq %s: %s", live.id,
                                event.seq, exc.message)
                    self._stale.add(live.id)
                    self._wake.set()
                    return
                if event.seq <= live.last_seq:
                    return
                await live.deliver_event(event)
                live.last_seq = event.seq
                metrics.EVENTS_DELIVERED.labels("bus").inc()
        if event.event == "room/closed":
            live.room = attrs.evolve(live.room, ended_at=event.created_at)
            await rooms.ended(live)

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

    async def _sync_all(self, targets: list[LiveRoom], rooms: HostedRooms) -> None:
        for live in targets:
            try:
                await self.sync(live, rooms)
            except ClassroomError as exc:
                log.warning("room %s: cannot sync with the database: %s", live.id,
                            exc.message)
                self._stale.add(live.id)
            else:
                self._stale.discard(live.id)

    async def bus_up(self, rooms: HostedRooms) -> None:
        """Subscribed (again): catch every hosted room up once, then rely on the bus."""
        self._bus_up = True
        await self._sync_all(rooms.hosted(), rooms)

    def bus_down(self) -> None:
        self._bus_up = False
        self._wake.set()

    async def follow(self, rooms: HostedRooms, *, interval: float = SYNC_INTERVAL) -> None:
        """Read the database every `interval` seconds for what other processes stored in
        our rooms: always without a bus, only while it is down (or a gap waits) with one."""
        while True:
            if self.bus_live and not self._stale:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            await trio.sleep(interval)
            if self.bus_live:
                targets = [live for live in rooms.hosted() if live.id in self._stale]
                self._stale &= {live.id for live in targets}
            else:
                targets = rooms.hosted()
            await self._sync_all(targets, rooms)
