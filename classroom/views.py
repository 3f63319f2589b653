"""Plain-JSON shapes of domain records, shared by the JSON API and the live protocol so a
room, a user or a time looks the same everywhere."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from storage import Attendance, Room, RoomEvent, User


def time_view(value: datetime | None) -> str | None:
    """ISO 8601 UTC with a Z: what browsers' Date() and every JSON reader understand."""
    return None if value is None else value.isoformat(timespec="milliseconds") + "Z"


def user_view(user: User) -> dict[str, Any]:
    return {"id": user.id, "username": user.username, "display_name": user.display_name}


def room_view(room: Room) -> dict[str, Any]:
    return {
        "id": room.id,
        "classroom_id": room.classroom_id,
        "kind": room.kind,
        "topic": room.topic,
        "open": room.is_open,
        "created_at": time_view(room.created_at),
        "ended_at": time_view(room.ended_at),
        "last_seq": room.last_seq,
    }


def event_view(event: RoomEvent) -> dict[str, Any]:
    """A stored event as the client saw it live: {event, seq, data}."""
    return {"event": event.event, "seq": event.seq, "data": json.loads(event.data)}


def attendance_view(record: Attendance, now: datetime) -> dict[str, Any]:
    """Time connected counts the stretch still running for someone online now."""
    seconds = record.seconds_connected
    if record.open_connections > 0:
        seconds += max(0.0, (now - record.last_join).total_seconds())
    return {
        "user": user_view(record.user),
        "first_join": time_view(record.first_join),
        "last_join": time_view(record.last_join),
        "last_leave": time_view(record.last_leave),
        "seconds_connected": round(seconds, 3),
        "minutes_connected": round(seconds / 60, 1),
        "online": record.open_connections > 0,
    }
