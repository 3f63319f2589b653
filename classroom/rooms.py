"""Rooms: live sessions and group discussions of a class, their history and attendance.

A live session is a room of kind `live`; a class has at most one open at a time. A room is
reached by id plus membership of its class (never by a secret in a URL). Ended rooms stay
readable (history, attendance) but take no new events.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import attrs

from storage import (
    Attendance,
    Classroom,
    Departure,
    Room,
    RoomEvent,
    StateWrite,
    Storage,
    User,
)

from . import limits
from .bus import Bus, NoBus, event_body, room_body
from .cache import Cache
from .classes import Classes
from .clock import Clock, utcnow
from .errors import Conflict, Forbidden, Invalid, NotFound, translate_storage_errors
from .live import CLOSED_NOTICE, stored_data
from .quota import StoredBytes
from .rules import Action, Role, check, check_private_target

LIVE: Final = "live"
DISCUSSION: Final = "discussion"
ROOM_KINDS: Final = (LIVE, DISCUSSION)
HISTORY_PAGE: Final = 500
# Seconds a chat server's connections count without it renewing its lease (it renews every
# LEASE / 3): after a crash, attendance ends at the last renewal, at most this long ago.
LEASE: Final = 30.0


@attrs.frozen
class RoomAccess:
    """A room as one member may use it."""

    room: Room
    classroom: Classroom
    role: Role

    @property
    def instructor_id(self) -> int:
        return self.classroom.instructor_id


RoomListener = Callable[[Room], None]


class Rooms:
    def __init__(self, storage: Storage, classes: Classes, cache: Cache, *,
                 clock: Clock = utcnow, bus: Bus | None = None) -> None:
        self._storage = storage
        self._classes = classes
        self._cache = cache
        self._now = clock
        self._bus = bus or NoBus()
        self._listeners: list[RoomListener] = []
        self.stored_bytes = StoredBytes(storage)

    def on_change(self, listener: RoomListener) -> None:
        """Call `listener` with each room this process opens or ends (a chat server in the
        same process tells watching pages at once; other processes learn from the database)."""
        self._listeners.append(listener)

    def _changed(self, room: Room) -> None:
        self.changed_somewhere(room)
        self._bus.announce("room", room_body(room))

    def changed_somewhere(self, room: Room) -> None:
        """A room opened or ended here or on another server (told by the bus)."""
        for listener in self._listeners:
            listener(room)

    @translate_storage_errors
    async def open(self, user: User, classroom_id: int, kind: str, topic: str = "") -> Room:
        if kind not in ROOM_KINDS:
            raise Invalid(f"kind must be one of {', '.join(ROOM_KINDS)}")
        action = Action.MANAGE_SESSION if kind == LIVE else Action.OPEN_DISCUSSION
        await self._classes.authorize_change(user, classroom_id, action)
        clean_topic = limits.topic(topic)
        if kind == DISCUSSION and not clean_topic:
            raise Invalid("a discussion needs a topic")
        if kind == LIVE:
            current = await self.current_session(classroom_id)
            if current is not None:
                raise Conflict(f"live session {current.id} is already running; end it first")
        room = await self._storage.create_room(classroom_id, kind, clean_topic, user.id,
                                               self._now())
        self._changed(room)
        return room

    @translate_storage_errors
    async def current_session(self, classroom_id: int) -> Room | None:
        return (await self.live_now([classroom_id])).get(classroom_id)

    @translate_storage_errors
    async def shown_session(self, classroom_id: int) -> Room | None:
        """`current_session` for pages to show ("Live now"): kept in the cache, so up to
        cache.STALE_AFTER old, and its `last_seq` and `chat_server` older still. Decisions
        (may a session start?) use `current_session`."""

        async def load() -> Room | None:
            return await self.current_session(classroom_id)

        return await self._cache.class_memo(classroom_id, "live", load)

    @translate_storage_errors
    async def live_now(self, classroom_ids: Sequence[int]) -> dict[int, Room]:
        """The running live session of each of these classes that has one (the caller
        knows the reader is a member of them)."""
        rooms = await self._storage.list_open_rooms(list(classroom_ids), LIVE)
        return {room.classroom_id: room for room in reversed(rooms)}

    @translate_storage_errors
    async def access(self, user: User, room_id: int, action: Action = Action.JOIN_ROOM
                     ) -> RoomAccess:
        """The room if the user may do `action` in it: NotFound for a missing room or a
        non-member (ids do not leak), Forbidden for a role that may not, or a removed member."""
        room = await self._storage.get_room(room_id)
        classroom = await self._storage.get_classroom(room.classroom_id) if room else None
        if room is None or classroom is None:
            check(None, action, what="room")
        assert room is not None and classroom is not None
        return await self.access_to(user, room, classroom, action)

    @translate_storage_errors
    async def access_to(self, user: User, room: Room, classroom: Classroom,
                        action: Action = Action.JOIN_ROOM) -> RoomAccess:
        """`access` to a room (and its class) the caller has already loaded: a chat server
        hosting the room need not read them again for each of a lecture's joins."""
        # A removal lasts as long as the session: its history is readable once it ended.
        if room.is_open:
            role, banned = await self._classes.role_and_ban(user, room.classroom_id, room.id)
        else:
            role, banned = await self._classes.role_of(user, room.classroom_id), False
        check(role, action, what="room")
        assert role is not None
        if role == Role.STUDENT and banned:
            raise Forbidden("the instructor removed you from this room")
        return RoomAccess(room=room, classroom=classroom, role=role)

    @translate_storage_errors
    async def in_class(self, user: User, classroom_id: int, kind: str | None = None
                       ) -> list[Room]:
        await self._classes.authorize(user, classroom_id, Action.VIEW_CLASS)
        return await self._storage.list_rooms(classroom_id, kind)

    @translate_storage_errors
    async def end(self, user: User, room_id: int) -> Room:
        """End the room from outside the chat (attendance becomes final; members are told by
        a stored `room/closed` event). Ending an ended room changes nothing."""
        access = await self.access(user, room_id, Action.MANAGE_SESSION)
        await self.close(access, user)
        room = await self._storage.get_room(room_id)
        assert room is not None
        return room

    @translate_storage_errors
    async def close(self, access: RoomAccess, user: User) -> RoomEvent | None:
        """Store `room/closed` and end the room in one step; None if it had ended already."""
        check(access.role, Action.MANAGE_SESSION)
        now = self._now()
        data = stored_data(access.room.id, user, {"message": CLOSED_NOTICE}, now)
        stored = await self._storage.close_room(access.room.id, "room/closed", user.id, data,
                                                now)
        if stored is not None:
            # Chat servers deliver it and let everyone go, wherever it was closed.
            self._bus.announce("event", event_body(stored))
            self._changed(attrs.evolve(access.room, ended_at=now))
        return stored

    @translate_storage_errors
    async def reload(self, room_id: int) -> Room | None:
        return await self._storage.get_room(room_id)

    @translate_storage_errors
    async def claim(self, room_id: int, server: str, *, replacing: str | None) -> bool:
        return await self._storage.claim_room(room_id, server, replacing=replacing)

    @translate_storage_errors
    async def replay(self, room_id: int, viewer_id: int, *, after: int,
                     limit: int = HISTORY_PAGE) -> list[RoomEvent]:
        """What a joined member may see after `after` (access already checked)."""
        return await self._storage.list_events(room_id, viewer_id, after=after, limit=limit)

    @translate_storage_errors
    async def stored_since(self, room_id: int, after: int,
                           limit: int = HISTORY_PAGE) -> list[RoomEvent]:
        """Every event after `after`, private ones too: for relaying to their audiences."""
        return await self._storage.list_room_events(room_id, after=after, limit=limit)

    @translate_storage_errors
    async def history(self, user: User, room_id: int, *, after: int = 0,
                      limit: int = HISTORY_PAGE) -> list[RoomEvent]:
        """What the user may see after seq `after`, oldest first, at most `limit`."""
        await self.access(user, room_id)
        return await self._storage.list_events(room_id, user.id, after=max(0, after),
                                               limit=max(1, min(limit, HISTORY_PAGE)))

    @translate_storage_errors
    async def conversation(self, access: RoomAccess, user: User, other_id: int | None
                           ) -> tuple[int, list[RoomEvent]]:
        """The private conversation of `user` with `other_id` (a student's is always with the
        instructor). Returns the other user's id and the events, oldest first."""
        if access.role == Role.STUDENT:
            other = access.instructor_id
        else:
            if other_id is None:
                raise Invalid("user_id: whose conversation?")
            other = other_id
            await self.check_private_target(access, other)
        events = await self._storage.list_events(access.room.id, user.id, after=0,
                                                 limit=HISTORY_PAGE, between=(user.id, other))
        return other, events

    @translate_storage_errors
    async def check_private_target(self, access: RoomAccess, target_id: int) -> None:
        target_role = await self._storage.get_role(access.room.classroom_id, target_id)
        check_private_target(access.role, Role(target_role) if target_role else None)

    @translate_storage_errors
    async def append(self, room_id: int, event: str, sender: User, recipient_id: int | None,
                     data: Mapping[str, Any], *, state: Sequence[StateWrite] = (),
                     client_id: str | None = None) -> RoomEvent:
        """Store an event (already authorized and validated by the caller) under the room's
        next seq, with the room state it changes (all or nothing). Invalid once the room has
        ended, wherever it was ended (a chat server's copy of the room may predate an end
        from the web). A resend (`client_id` the sender used before) stores nothing and
        returns the first event."""
        now = self._now()
        text = stored_data(room_id, sender, data, now)
        size = len(text.encode("utf-8", "surrogatepass"))
        await self.stored_bytes.charge(room_id, sender.id, size, event)
        try:
            stored = await self._storage.append_event(room_id, event, sender.id, recipient_id,
                                                      text, now, state=state,
                                                      client_id=client_id)
        except BaseException:
            self.stored_bytes.refund(room_id, sender.id, size, event)
            raise
        if stored is not None and stored.data != text:  # a resend: nothing new stored
            self.stored_bytes.refund(room_id, sender.id, size, event)
        if stored is None:
            self.stored_bytes.refund(room_id, sender.id, size, event)
            raise Invalid("this room has ended; its history stays readable")
        # Stored first, then announced: other chat servers deliver it to their members.
        self._bus.announce("event", event_body(stored))
        return stored

    @translate_storage_errors
    async def kick(self, access: RoomAccess, target_id: int) -> None:
        check(access.role, Action.KICK)
        target_role = await self._storage.get_role(access.room.classroom_id, target_id)
        if target_role is None:
            raise NotFound("no such member in this class")
        if target_role != Role.STUDENT:
            raise Invalid("only students can be removed from a room")
        await self._storage.ban_from_room(access.room.id, target_id, self._now())
        # Every chat server removes the student's connections and refuses their events.
        self._bus.announce("kick", {"room_id": access.room.id, "user_id": target_id})

    @translate_storage_errors
    async def is_banned(self, room_id: int, user_id: int) -> bool:
        """Removed from this room by the instructor (what a server without the bus asks on
        each event, since other servers' kicks do not reach it)."""
        return await self._storage.is_banned(room_id, user_id)

    @translate_storage_errors
    async def arrived_many(self, room: Room, user_ids: Sequence[int], server: str = "") -> None:
        """One more connection of each of these users (a user listed twice: two), held by
        chat server `server`, joined the room: in one transaction."""
        if room.kind == LIVE and room.is_open and user_ids:
            await self._storage.attendance_join_many(room.id, user_ids, self._now(),
                                                     server=server)

    @translate_storage_errors
    async def departed_many(self, departures: Sequence[tuple[Room, int, datetime, str]]
                            ) -> None:
        """One connection of the user left the room, for each (room, user id, when, held by
        chat server), in order, in one transaction."""
        live = [Departure(room.id, user_id, at, server)
                for room, user_id, at, server in departures if room.kind == LIVE]
        if live:
            await self._storage.attendance_leave_many(live)

    @translate_storage_errors
    async def hold_lease(self, server: str) -> None:
        """Chat server `server` is alive: its connections count for LEASE more seconds."""
        now = self._now()
        await self._storage.renew_lease(server, now, now + timedelta(seconds=LEASE))

    @translate_storage_errors
    async def end_connections_of(self, server: str) -> int:
        """Attendance of everyone `server` held ends as of its last lease renewal: it died
        (or is starting again under the same name). Returns how many records ended."""
        return await self._storage.clear_server(server, self._now())

    @translate_storage_errors
    async def lapsed_servers(self) -> list[str]:
        return await self._storage.lapsed_servers(self._now())

    @translate_storage_errors
    async def attendance(self, user: User, room_id: int) -> tuple[Room, list[Attendance]]:
        """Everyone who joined the session (students and the instructor), first join first."""
        access = await self.access(user, room_id, Action.VIEW_ATTENDANCE)
        return access.room, await self._storage.list_attendance(room_id)

    @translate_storage_errors
    async def members(self, classroom_id: int) -> list[tuple[User, Role]]:
        """A class's members with their roles (the caller has checked membership)."""
        members = await self._storage.list_members(classroom_id)
        return [(m.user, Role(m.role)) for m in members]

    @translate_storage_errors
    async def state(self, room_id: int, name: str) -> dict[int, str]:
        return {v.user_id: v.value for v in await self._storage.list_state(room_id, name)}
