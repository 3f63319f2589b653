"""What the domain and the listeners need of the message bus between servers: announce a
fact to every server (a stored event, a presence change, a kick, a new room, a revoked
sign-in) and say whether the bus is up. `chat/bus.py` is the Redis implementation, wired by
start-up; without a bus (one chat server, SQLite) announcing does nothing.

An announcement never waits and never fails: the database stays the source of truth, and a
server that missed an announcement (the bus was down) catches up from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Protocol

from storage import Room, RoomEvent

# Bus states as `healthz` and the metrics show them.
OFF: Final = "off"  # no bus configured: one chat server, or every server reads the database
UP: Final = "up"
DOWN: Final = "down"  # configured but unreachable: servers read the database meanwhile


class Bus(Protocol):
    @property
    def state(self) -> str: ...

    def announce(self, kind: str, body: Mapping[str, Any]) -> None:
        """Publish `body` under `kind` to every server (this one's listener included)."""


class NoBus:
    """No bus: nothing to tell, nobody to tell it to."""

    @property
    def state(self) -> str:
        return OFF

    def announce(self, kind: str, body: Mapping[str, Any]) -> None:
        pass


def event_body(event: RoomEvent) -> dict[str, Any]:
    """A stored event as an `event` announcement's body."""
    return {"room_id": event.room_id, "seq": event.seq, "event": event.event,
            "sender_id": event.sender_id, "recipient_id": event.recipient_id,
            "data": event.data, "created_at": event.created_at.isoformat()}


def event_of(body: Mapping[str, Any]) -> RoomEvent:
    """The stored event an `event` announcement carries; KeyError/TypeError/ValueError when
    it is malformed."""
    recipient = body["recipient_id"]
    return RoomEvent(room_id=int(body["room_id"]), seq=int(body["seq"]),
                     event=str(body["event"]), sender_id=int(body["sender_id"]),
                     recipient_id=None if recipient is None else int(recipient),
                     data=str(body["data"]),
                     created_at=datetime.fromisoformat(str(body["created_at"])))


def room_body(room: Room) -> dict[str, Any]:
    """A room opened or ended, as a `room` announcement's body."""
    return {"id": room.id, "classroom_id": room.classroom_id, "kind": room.kind,
            "topic": room.topic, "created_by": room.created_by,
            "created_at": room.created_at.isoformat(),
            "ended_at": None if room.ended_at is None else room.ended_at.isoformat(),
            "chat_server": room.chat_server, "last_seq": room.last_seq}


def room_of(body: Mapping[str, Any]) -> Room:
    ended = body["ended_at"]
    server = body["chat_server"]
    return Room(id=int(body["id"]), classroom_id=int(body["classroom_id"]),
                kind=str(body["kind"]), topic=str(body["topic"]),
                created_by=int(body["created_by"]),
                created_at=datetime.fromisoformat(str(body["created_at"])),
                ended_at=None if ended is None else datetime.fromisoformat(str(ended)),
                chat_server=None if server is None else str(server),
                last_seq=int(body["last_seq"]))
