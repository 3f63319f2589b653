"""The domain: users, classes, membership, posts, rooms, attendance, live events; every
permission rule (rules.py), config, the `classroom` command and process start-up.

The record types are storage's frozen values, re-exported here so `web/` and `chat/` depend
on the domain only."""

from storage import (
    Attendance,
    Classroom,
    Comment,
    Member,
    Membership,
    Post,
    Room,
    RoomEvent,
    StateWrite,
    TagCount,
    User,
)

from .errors import ClassroomError
from .services import Services

__all__ = [
    "Attendance",
    "Classroom",
    "ClassroomError",
    "Comment",
    "Member",
    "Membership",
    "Post",
    "Room",
    "RoomEvent",
    "Services",
    "StateWrite",
    "TagCount",
    "User",
]
