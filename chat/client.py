"""One WebSocket connection: who it is, what it has joined, and how frames reach it."""

from __future__ import annotations

from typing import Any, Final

import attrs
import trio

from classroom import User
from classroom.rooms import RoomAccess
from protocol.envelope import encode_data, encode_event
from protocol.wsframe import text_frame

from .outbox import Outbox

# Live frames held for a client while its history replays; past this it resumes later.
MAX_PENDING_FRAMES: Final = 2000

# Close codes (RFC 6455 and the registry's private range).
CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001
CLOSE_TRY_AGAIN_LATER: Final = 1013


@attrs.define(eq=False)
class Joined:
    """A client's membership of one room."""

    access: RoomAccess
    # Frames published while history replays, delivered after it; None once live.
    pending: list[bytes] | None = None
    # The room's presence change count when the join answer's snapshot was taken (None
    # before): later presence frames carry only the changes after it (see presence.py).
    presence_seen: int | None = None
    # The arrival is stored (a departure is owed), and the client has left the room: the
    # departure is noted once both are true (see RoomHub.detach).
    arrived: bool = False
    left: bool = False


@attrs.define(eq=False)
class Client:
    user: User
    outbox: Outbox = attrs.field(factory=Outbox)
    rooms: dict[int, Joined] = attrs.field(factory=dict)
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    close_code: int = CLOSE_NORMAL
    close_reason: str = ""
    # Keepalive (one task pings every connection, see ChatServer._keepalive): the
    # connection, and the ping in flight (None between pings).
    ws: Any = None
    ping: trio.CancelScope | None = None
    # Its sign-in, as the sign-in check knows it (see chat/sessions.py), once watched.
    session_key: str | None = None

    def deliver(self, room_id: int, frame: bytes) -> None:
        """Queue a live frame of a room (held back while that room's history replays)."""
        joined = self.rooms.get(room_id)
        if joined is not None and joined.pending is not None:
            if len(joined.pending) >= MAX_PENDING_FRAMES:
                self.disconnect(CLOSE_TRY_AGAIN_LATER, "too far behind; resume from your seq")
            else:
                joined.pending.append(frame)
            return
        if not self.outbox.push(frame):
            self.disconnect(CLOSE_TRY_AGAIN_LATER, "too slow; resume from your last seq")

    def send(self, event: str, data: dict[str, Any], *, ref: int | None = None) -> None:
        """An answer or notice for this client alone (not stored, no seq)."""
        self.send_json(event, encode_data(data), ref=ref)

    def send_json(self, event: str, data_json: str, *, ref: int | None = None) -> None:
        """The same, with `data` already encoded."""
        self.deliver(0, text_frame(encode_event(event, data_json, ref=ref)))

    def error(self, code: str, message: str, *, ref: int | None = None) -> None:
        self.send("error", {"code": code, "message": message}, ref=ref)

    def ack(self, ref: int | None, **extra: Any) -> None:
        if ref is not None:
            self.deliver(0, text_frame(encode_event("ack", encode_data(extra), ref=ref)))

    def disconnect(self, code: int, reason: str) -> None:
        """End this connection soon with `code`; its handler does the closing handshake."""
        if self.close_code == CLOSE_NORMAL:
            self.close_code, self.close_reason = code, reason
        self.scope.cancel()
