"""Rooms: live sessions and group discussions of a class, their history and attendance.

A live session is a room of kind `live`; a class has at most one open at a time. A room is
reached by id plus membership of its class (never by a secret in a URL). Ended rooms stay
readable (history, attendance) but take no new events.
"""

from __future__ import annotations

from typing import Final

import attrs

from storage import Attendance, Classroom, Room, RoomEvent, Storage, User

from . import limits
from .classes import Classes
from .clock import Clock, utcnow
from .errors import Conflict, Forbidden, Invalid, NotFound, translate_storage_errors
from .rules import Action, Role, check, check_private_target

LIVE: Final = "live"
DISCUSSION: Final = "discussion"
ROOM_KINDS: Final = (LIVE, DISCUSSION)
HISTORY_PAGE: Final = 500


@attrs.frozen
class RoomAccess:
    """A room as one member may use it."""

    room: Room
    classroom: Classroom
    role: Role

    @property
    def instructor_id(self) -> int:
        return self.classroom.instructor_id


class Rooms:
    def __init__(self, storage: Storage, classes: Classes, *, clock: Clock = utcnow) -> None:
        self._storage = storage
        self._classes = classes
        self._now = clock

    @translate_storage_errors
    async def open(self, user: User, classroom_id: int, kind: str, topic: str = "") -> Room:
        if kind not in ROOM_KINDS:
            raise Invalid(f"kind must be one of {', '.join(ROOM_KINDS)}")
        action = Action.MANAGE_SESSION if kind == LIVE else Action.OPEN_DISCUSSION
        await self._classes.authorize(user, classroom_id, action)
        clean_topic = limits.topic(topic)
        if kind == DISCUSSION and not clean_topic:
            raise Invalid("a discussion needs a topic")
        if kind == LIVE:
            current = await self.current_session(classroom_id)
            if current is not None:
                raise Conflict(f"live session {current.id} is already running; end it first")
        return await self._storage.create_room(classroom_id, kind, clean_topic, user.id,
                                               self._now())

    async def current_session(self, classroom_id: int) -> Room | None:
        for room in await self._storage.list_rooms(classroom_id, LIVE):
            if room.is_open:
                return room
        return None

    @translate_storage_errors
    async def access(self, user: User, room_id: int, action: Action = Action.JOIN_ROOM
                     ) -> RoomAccess:
        """The room if the user may do `action` in it: NotFound for a missing room or a
        non-member (ids do not leak), Forbidden for a role that may not, or a removed member."""
        room = await self._storage.get_room(room_id)
        role = await self._classes.role_of(user, room.classroom_id) if room else None
        check(role, action, what="room")
        assert room is not None and role is not None
        # A removal lasts as long as the session: its history is readable once it ended.
        if (role == Role.STUDENT and room.is_open
                and await self._storage.is_banned(room_id, user.id)):
            raise Forbidden("the instructor removed you from this room")
        classroom = await self._storage.get_classroom(room.classroom_id)
        if classroom is None:
            raise NotFound("no such room")
        return RoomAccess(room=room, classroom=classroom, role=role)

    @translate_storage_errors
    async def in_class(self, user: User, classroom_id: int, kind: str | None = None
                       ) -> list[Room]:
        await self._classes.authorize(user, classroom_id, Action.VIEW_CLASS)
        return await self._storage.list_rooms(classroom_id, kind)

    @translate_storage_errors
    async def end(self, user: User, room_id: int) -> Room:
        """End the room (attendance becomes final). Ending an ended room changes nothing."""
        await self.access(user, room_id, Action.MANAGE_SESSION)
        await self._storage.end_room(room_id, self._now())
        room = await self._storage.get_room(room_id)
        assert room is not None
        return room

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

    async def check_private_target(self, access: RoomAccess, target_id: int) -> None:
        target_role = await self._storage.get_role(access.room.classroom_id, target_id)
        check_private_target(access.role, Role(target_role) if target_role else None)

    @translate_storage_errors
    async def append(self, room_id: int, event: str, sender_id: int, recipient_id: int | None,
                     data: str) -> RoomEvent:
        """Store an event (already authorized and validated by the caller) under the room's
        next seq. Invalid once the room has ended, wherever it was ended (a chat server's
        copy of the room may predate an end from the web)."""
        stored = await self._storage.append_event(room_id, event, sender_id, recipient_id,
                                                  data, self._now())
        if stored is None:
            raise Invalid("this room has ended; its history stays readable")
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

    @translate_storage_errors
    async def close(self, access: RoomAccess) -> bool:
        check(access.role, Action.MANAGE_SESSION)
        return await self._storage.end_room(access.room.id, self._now())

    @translate_storage_errors
    async def arrived(self, room: Room, user: User) -> None:
        if room.kind == LIVE and room.is_open:
            await self._storage.attendance_join(room.id, user.id, self._now())

    @translate_storage_errors
    async def departed(self, room: Room, user: User) -> None:
        if room.kind == LIVE:
            await self._storage.attendance_leave(room.id, user.id, self._now())

    @translate_storage_errors
    async def attendance(self, user: User, room_id: int) -> tuple[Room, list[Attendance]]:
        """Everyone who joined the session (students and the instructor), first join first."""
        access = await self.access(user, room_id, Action.VIEW_ATTENDANCE)
        return access.room, await self._storage.list_attendance(room_id)

    @translate_storage_errors
    async def members(self, access: RoomAccess) -> list[tuple[User, Role]]:
        members = await self._storage.list_members(access.room.classroom_id)
        return [(m.user, Role(m.role)) for m in members]

    @translate_storage_errors
    async def save_state(self, room_id: int, user_id: int, name: str, value: str) -> None:
        await self._storage.set_state(room_id, user_id, name, value, self._now())

    @translate_storage_errors
    async def clear_state(self, room_id: int, name: str) -> None:
        await self._storage.clear_state(room_id, name)

    @translate_storage_errors
    async def state(self, room_id: int, name: str) -> dict[int, str]:
        return {v.user_id: v.value for v in await self._storage.list_state(room_id, name)}
