"""The rooms this chat server hosts right now, and the one path every event takes:
store first (getting the room's next seq), then fan out, in seq order.

Invariants:
- `LiveRoom.lock` is held from storing an event to queueing it for every member, so members
  receive a room's events in seq order;
- a client joining with `after=N` is registered under the same lock, noting the last seq;
  stored history (N, last] is replayed from the database, and live frames that arrive
  meanwhile wait in `Joined.pending`: nothing lost, nothing twice;
- private events reach only the sender's and the recipient's connections.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Final

import attrs
import trio

from classroom import Room, RoomEvent, Services, User
from classroom.errors import ClassroomError
from classroom.rooms import RoomAccess
from classroom.views import user_view
from protocol.envelope import encode_data, encode_event
from protocol.wsframe import text_frame

from .client import Client, Joined

log = logging.getLogger("chat.hub")
# History replays in pages of this many events.
REPLAY_PAGE: Final = 500
# Seconds between looks at the database for events and ends from other processes.
SYNC_INTERVAL: Final = 2.0


@attrs.define(eq=False)
class LiveRoom:
    room: Room
    instructor_id: int
    last_seq: int
    lock: trio.Lock = attrs.field(factory=trio.Lock)
    by_user: dict[int, set[Client]] = attrs.field(factory=dict)
    # The class's members by user id, each as its join-answer JSON entry offline and online,
    # encoded once per room (see RoomHub._join_answer).
    members: dict[int, tuple[str, str]] | None = None

    @property
    def id(self) -> int:
        return self.room.id

    def clients(self) -> list[Client]:
        return [client for clients in self.by_user.values() for client in clients]

    def online(self) -> set[int]:
        return set(self.by_user)

    def deliver_event(self, event: RoomEvent) -> None:
        """A stored event to its audience: everyone, or its sender and recipient only."""
        only = None if event.recipient_id is None else (event.sender_id, event.recipient_id)
        self.deliver(frame_of(event), only=only)

    def deliver(self, frame: bytes, *, only: tuple[int, ...] | None = None) -> None:
        targets = (self.clients() if only is None
                   else [c for uid in only for c in self.by_user.get(uid, ())])
        for client in targets:
            client.deliver(self.id, frame)


def frame_of(event: RoomEvent) -> bytes:
    return text_frame(encode_event(event.event, event.data, seq=event.seq))


class RoomHub:
    def __init__(self, services: Services, server_name: str) -> None:
        self._services = services
        self._rooms: dict[int, LiveRoom] = {}
        self.server_name = server_name
        # Every connection by user, to tell members of a class about a new room.
        self.by_user: dict[int, set[Client]] = {}
        # Departures (room, user, when) the database was down for; written when it is back.
        self._unrecorded: list[tuple[Room, User, datetime]] = []

    def connected(self, client: Client) -> None:
        self.by_user.setdefault(client.user.id, set()).add(client)

    async def disconnected(self, client: Client) -> None:
        clients = self.by_user.get(client.user.id)
        if clients is not None:
            clients.discard(client)
            if not clients:
                del self.by_user[client.user.id]
        for room_id in list(client.rooms):
            await self.detach(room_id, client)

    def live(self, room_id: int) -> LiveRoom | None:
        return self._rooms.get(room_id)

    async def _load(self, access: RoomAccess) -> LiveRoom:
        live = self._rooms.get(access.room.id)
        if live is None:
            # Read afresh: the room may have been unloaded (last member gone) after events
            # newer than `access` was read; a stale last_seq would skip them on replay.
            room = await self._services.rooms.reload(access.room.id) or access.room
            live = self._rooms.get(room.id)  # loaded by someone else meanwhile?
            if live is not None:
                return live
            live = LiveRoom(room=room, instructor_id=access.instructor_id, last_seq=room.last_seq)
            self._rooms[room.id] = live
            await self._services.rooms.claim(room.id, self.server_name,
                                             replacing=room.chat_server)
        return live

    # -- joining and leaving -------------------------------------------------------------

    async def attach(self, client: Client, access: RoomAccess, after: int,
                     ref: int | None) -> None:
        """Join (or resume) a room: the `room/join` answer, then stored history after
        `after`, then live events."""
        room_id = access.room.id
        if room_id in client.rooms:
            # First, so that leaving cannot unload the very LiveRoom we are about to join.
            await self.detach(room_id, client, announce=False)
        user = client.user
        while True:
            live = await self._load(access)
            async with live.lock:
                if self._rooms.get(room_id) is not live:
                    continue  # unloaded while we waited for the lock: load it again
                first_connection = user.id not in live.by_user
                live.by_user.setdefault(user.id, set()).add(client)
                joined = Joined(access=access, pending=[])
                client.rooms[room_id] = joined
                upto = live.last_seq
            break
        client.send_json("room/join", await self._join_answer(live, access, client), ref=ref)
        if first_connection:
            self._presence(live, user, online=True)
        try:
            await self._services.rooms.arrived(live.room, user)
            await self._replay(client, live, user, after, upto)
        except BaseException:
            await self.detach(room_id, client)
            raise
        pending, joined.pending = joined.pending or [], None
        for frame in pending:
            client.deliver(room_id, frame)

    async def _replay(self, client: Client, live: LiveRoom, user: User, after: int,
                      upto: int) -> None:
        while after < upto:
            events = await self._services.rooms.replay(live.id, user.id, after=after,
                                                       limit=REPLAY_PAGE)
            events = [e for e in events if e.seq <= upto]
            for event in events:
                await client.outbox.push_patiently(frame_of(event))
            if len(events) < REPLAY_PAGE:
                break
            after = events[-1].seq

    async def _join_answer(self, live: LiveRoom, access: RoomAccess, client: Client) -> str:
        """The `room/join` answer's data as JSON text. A lecture's thousand joins each list
        the thousand members, so each member's entry is encoded once, not once per join."""
        if live.members is None or client.user.id not in live.members:
            # Loaded once per room, again only when someone new to it arrives (a student who
            # joined the class after the room loaded).
            roster = await self._services.rooms.members(access.room.classroom_id)
            live.members = {}
            for user, role in roster:
                entry = {**user_view(user), "role": role.value}
                live.members[user.id] = (encode_data({**entry, "online": False}),
                                         encode_data({**entry, "online": True}))
        online = live.online()
        members = ",".join(entries[uid in online] for uid, entries in live.members.items())
        room = live.room
        head = encode_data({
            "room": {"id": room.id, "classroom_id": room.classroom_id, "kind": room.kind,
                     "topic": room.topic, "open": room.is_open, "last_seq": live.last_seq,
                     "instructor_id": live.instructor_id, "chat_server": self.server_name},
            "you": {**user_view(client.user), "role": access.role.value},
        })
        return f'{head[:-1]},"members":[{members}]}}'

    async def detach(self, room_id: int, client: Client, *, announce: bool = True) -> None:
        joined = client.rooms.pop(room_id, None)
        live = self._rooms.get(room_id)
        if joined is None or live is None:
            return
        user = client.user
        clients = live.by_user.get(user.id, set())
        clients.discard(client)
        if not clients:
            live.by_user.pop(user.id, None)
            if announce:
                self._presence(live, user, online=False)
        if not live.by_user:
            del self._rooms[room_id]  # reloaded from the database on the next join
        departure = (live.room, user, self._services.clock())
        with trio.CancelScope(shield=True):
            try:
                await self._services.rooms.departed(*departure)
            except ClassroomError as exc:
                log.warning("attendance of user %s in room %s not recorded yet: %s",
                            user.id, room_id, exc.message)
                self._unrecorded.append(departure)

    async def _record_departures(self) -> None:
        """Write departures the database missed (it was down), with their own times."""
        while self._unrecorded:
            await self._services.rooms.departed(*self._unrecorded[0])
            self._unrecorded.pop(0)

    def _presence(self, live: LiveRoom, user: User, *, online: bool) -> None:
        data = {"room_id": live.id, "user_id": user.id, "name": user.display_name,
                "online": online}
        live.deliver(text_frame(encode_event("presence", encode_data(data))))

    # -- publishing ----------------------------------------------------------------------

    async def publish(self, live: LiveRoom, event: str, sender: User,
                      recipient_id: int | None, data: dict[str, Any],
                      *, after_store: Any = None) -> RoomEvent:
        """Store the event, then send it to the room (recipient None) or to the sender and
        the recipient only. `after_store` (async, no arguments) runs inside the lock after a
        successful store: state that must change in step with the event."""
        async with live.lock:
            # Shielded (the storage layer has its own timeouts): a sender that hangs up, is
            # removed or times out mid-store must not leave an event stored but unsent, a
            # gap live members would only see after a resume.
            with trio.CancelScope(shield=True):
                stored = await self._services.rooms.append(live.id, event, sender,
                                                           recipient_id, data)
                await self._relay_before(live, stored.seq)
                live.last_seq = stored.seq
                if after_store is not None:
                    await after_store()
                live.deliver_event(stored)
        return stored

    async def close(self, live: LiveRoom, access: RoomAccess, user: User) -> bool:
        """End the room: `room/closed` stored and sent to everyone, then all leave.
        False when it had already ended (nothing sent)."""
        async with live.lock:
            with trio.CancelScope(shield=True):
                stored = await self._services.rooms.close(access, user)
                if stored is not None:
                    await self._relay_before(live, stored.seq)
                    live.last_seq = stored.seq
                    live.deliver_event(stored)
        if stored is not None:
            await self._unload(live)
        return stored is not None

    async def _unload(self, live: LiveRoom) -> None:
        for client in live.clients():
            await self.detach(live.id, client, announce=False)
        self._rooms.pop(live.id, None)

    # -- keeping up with other processes -------------------------------------------------

    async def follow_database(self, *, interval: float = SYNC_INTERVAL) -> None:
        """Relay what other processes stored in our rooms and notice rooms ended elsewhere
        (the instructor's End button on an app server), every `interval` seconds."""
        while True:
            await trio.sleep(interval)
            try:
                await self._record_departures()
            except ClassroomError as exc:
                log.warning("%d departures still not recorded: %s", len(self._unrecorded),
                            exc.message)
            for live in list(self._rooms.values()):
                try:
                    await self.sync(live)
                except ClassroomError as exc:
                    log.warning("room %s: cannot sync with the database: %s", live.id,
                                exc.message)

    async def _relay_before(self, live: LiveRoom, seq: int) -> None:
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

    async def sync(self, live: LiveRoom) -> None:
        room = await self._services.rooms.reload(live.id)
        if room is None:
            return
        async with live.lock:
            with trio.CancelScope(shield=True):
                await self._relay_before(live, room.last_seq + 1)
                live.room = room
        if not room.is_open and self._rooms.get(live.id) is live:
            await self._unload(live)
