"""What crosses chat servers on the bus besides stored events (relay.py): presence, kicks,
rooms opened or ended, ended sign-ins; and which other chat servers are alive.

Presence: a user is online in a room when connected to it on any chat server. Each server
announces its own users' first arrival and last departure; every server keeps, per hosted
room, who is online on each other server (`LiveRoom.remote`) and tells its members only when
a user's online-anywhere state changes. A server that loads a room asks the others who is
there (`who`, answered by `here`); one that stops beating for `SERVER_SILENCE` seconds, or
comes back with a new boot id (restarted), has its users taken offline.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Final

import trio

from classroom import Services
from classroom.bus import event_of, room_of
from classroom.errors import ClassroomError
from classroom.views import room_view

from .bus import BusMessage

if TYPE_CHECKING:
    from .hub import RoomHub

log = logging.getLogger("chat.crossing")
# A chat server not heard from for this long is gone: its users are offline.
SERVER_SILENCE: Final = 5.0


class Crossing:
    """The chat server's bus listener (see chat/bus.py's BusListener)."""

    def __init__(self, services: Services, hub: RoomHub) -> None:
        self._services = services
        self._hub = hub
        # Other chat servers: name -> (boot id, last heard, monotonic).
        self._servers: dict[str, tuple[str, float]] = {}

    # -- the BusListener interface ------------------------------------------------------

    async def bus_up(self) -> None:
        await self._hub.relay.bus_up(self._hub)
        hosted = [live.id for live in self._hub.hosted()]
        if hosted:
            self._services.bus.announce("who", {"room_ids": hosted})
            self._announce_here(hosted)

    def bus_down(self) -> None:
        self._hub.relay.bus_down()
        # Nothing is known about the others until the bus is back.
        for name in list(self._servers):
            self._forget_server(name)

    async def bus_message(self, message: BusMessage) -> None:
        if message.kind == "hb":
            if message.body.get("chat"):  # app servers beat too, and host nobody
                self._heard(message)
            return
        if message.origin in self._servers:
            self._heard(message)
        try:
            await self._handle(message)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("bus: ignored a malformed %r message: %r", message.kind, exc)

    async def _handle(self, message: BusMessage) -> None:
        body, hub = message.body, self._hub
        kind = message.kind
        if kind == "event":
            await hub.relay.received(event_of(body), hub)
        elif kind == "presence":
            live = hub.live(int(body["room_id"]))
            if live is not None:
                hub.remote_presence(live, message.origin, int(body["user_id"]),
                                    str(body["name"]), online=bool(body["online"]))
        elif kind == "who":
            self._announce_here([int(r) for r in body["room_ids"]])
        elif kind == "here":
            for room_id, users in body["rooms"].items():
                live = hub.live(int(room_id))
                if live is not None:
                    hub.remote_roster(live, message.origin,
                                      {int(uid): str(name) for uid, name in users})
        elif kind == "kick":
            live = hub.live(int(body["room_id"]))
            if live is not None:
                await hub.remove(live, int(body["user_id"]))
        elif kind == "room":
            await self._room_changed(body)
        elif kind == "sessions":
            self._services.accounts.tell_sessions_ended()

    # -- presence -----------------------------------------------------------------------

    def _announce_here(self, room_ids: list[int]) -> None:
        """Who is online here in each of these rooms (empty lists included: the asker
        replaces what it knew of this server)."""
        rooms: dict[str, Any] = {}
        for room_id in room_ids:
            live = self._hub.live(room_id)
            rooms[str(room_id)] = [] if live is None else [
                [uid, next(iter(clients)).user.display_name]
                for uid, clients in live.by_user.items() if clients]
        self._services.bus.announce("here", {"rooms": rooms})

    def _heard(self, message: BusMessage) -> None:
        known = self._servers.get(message.origin)
        if known is not None and known[0] != message.boot:
            log.info("chat server %s restarted: its users are offline", message.origin)
            self._forget_server(message.origin)
        self._servers[message.origin] = (message.boot, time.monotonic())

    def _forget_server(self, name: str) -> None:
        self._servers.pop(name, None)
        for live in self._hub.hosted():
            self._hub.remote_roster(live, name, {})

    async def watch_servers(self, *, interval: float = 1.0) -> None:
        """Take the users of chat servers that fell silent offline."""
        while True:
            await trio.sleep(interval)
            now = time.monotonic()
            for name, (_, heard) in list(self._servers.items()):
                if now - heard > SERVER_SILENCE:
                    log.warning("chat server %s silent for %.0f s: its users are offline",
                                name, now - heard)
                    self._forget_server(name)

    # -- rooms --------------------------------------------------------------------------

    async def _room_changed(self, body: dict[str, Any]) -> None:
        room = room_of(body)
        self._services.rooms.changed_somewhere(room)
        if not room.is_open:
            return  # members hear of the end through the stored room/closed event
        # A new room: tell this server's connections of its class's members.
        update = {"room": room_view(room)}
        try:
            members = await self._services.rooms.members(room.classroom_id)
        except ClassroomError as exc:
            log.warning("room %s opened elsewhere; members here not told: %s", room.id,
                        exc.message)
            return
        for member, _ in members:
            for client in self._hub.by_user.get(member.id, ()):
                client.send("room/update", update)
