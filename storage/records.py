"""Frozen values the storage layer returns. Times are naive UTC datetimes."""

from __future__ import annotations

from datetime import datetime

import attrs


@attrs.frozen
class User:
    id: int
    username: str
    display_name: str
    created_at: datetime


@attrs.frozen
class Classroom:
    id: int
    name: str
    description: str
    join_code: str
    instructor_id: int
    instructor_name: str
    created_at: datetime
    # Joining by code is possible (the instructor can turn the code off).
    join_open: bool = True
    # Archived: out of the way in "My classes", read-only for everyone.
    archived_at: datetime | None = None

    @property
    def archived(self) -> bool:
        return self.archived_at is not None


@attrs.frozen
class Membership:
    """One class as seen by one of its members ("My classes")."""

    classroom: Classroom
    role: str
    joined_at: datetime


@attrs.frozen
class Member:
    """One member of a class as seen on its roster."""

    user: User
    role: str
    joined_at: datetime


@attrs.frozen
class Post:
    id: int
    classroom_id: int
    author_id: int
    author_name: str
    title: str
    body: str
    tags: tuple[str, ...]
    created_at: datetime
    edited_at: datetime | None = None


@attrs.frozen
class Comment:
    """A comment under a post: for the whole class (`student_id` None), or part of one
    student's private thread with the instructor on that post."""

    id: int
    post_id: int
    author_id: int
    author_name: str
    student_id: int | None
    body: str
    created_at: datetime

    @property
    def private(self) -> bool:
        return self.student_id is not None


@attrs.frozen
class TagCount:
    name: str
    posts: int


@attrs.frozen
class Room:
    id: int
    classroom_id: int
    kind: str
    topic: str
    created_by: int
    created_at: datetime
    ended_at: datetime | None
    chat_server: str | None
    last_seq: int

    @property
    def is_open(self) -> bool:
        return self.ended_at is None


@attrs.frozen
class RoomEvent:
    """One stored live event. `recipient_id` None means every member may see it;
    otherwise only the sender and the recipient do. `data` is the JSON text as sent out."""

    room_id: int
    seq: int
    event: str
    sender_id: int
    recipient_id: int | None
    data: str
    created_at: datetime


@attrs.frozen
class Attendance:
    room_id: int
    user: User
    first_join: datetime
    last_join: datetime
    last_leave: datetime | None
    seconds_connected: float
    open_connections: int


@attrs.frozen
class Departure:
    """One connection of `user_id` to room `room_id`, held by chat server `server` (""
    when not counted per server), closed `at` (see Storage.attendance_leave_many)."""

    room_id: int
    user_id: int
    at: datetime
    server: str = ""


@attrs.frozen
class StateWrite:
    """A change of room state stored in the same transaction as its event: `value` for
    (`user_id`, `name`), or, when `value` is None, `name` forgotten for every user."""

    user_id: int
    name: str
    value: str | None


@attrs.frozen
class StateValue:
    """A piece of a room's state (steps, settings, a student's status) by name and user
    (user 0 for the whole room)."""

    room_id: int
    user_id: int
    name: str
    value: str
    updated_at: datetime
