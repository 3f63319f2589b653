"""Rate limits on live events (see classroom/ratelimit.py for the buckets and the rates).

Every frame a client sends takes a token from its user's bucket for that room (all of the
user's connections to this server share it; frames naming no room the client has joined share
one bucket per user, so made-up room ids cannot grow memory). Over the limit the frame is
refused with `error` `rate_limited` and `data.retry_after` (seconds), before it is looked at,
so nothing is stored. A connection that keeps sending while refused is closed with 1008.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Final

import trio

from classroom.ratelimit import EVENT_RATES, REFUSALS, Buckets, Rate, retry_hint
from classroom.rules import Role
from protocol.envelope import Envelope

from .client import Client

# Policy violation (RFC 6455): the client ignored `rate_limited` answers.
CLOSE_POLICY_VIOLATION: Final = 1008


class FloodGuard:
    def __init__(self, rates: Mapping[Role, Rate] = EVENT_RATES) -> None:
        self._rates = rates
        self._events: Buckets[tuple[int, int]] = Buckets()
        self._refusals: weakref.WeakKeyDictionary[Client, Buckets[int]] = (
            weakref.WeakKeyDictionary())

    def admit(self, client: Client, envelope: Envelope | None) -> bool:
        """True when the frame may be handled. Otherwise the client has been answered (or
        disconnected) and the frame must be dropped. `envelope` None: a frame that did not
        parse (it still counts)."""
        now = trio.current_time()
        room_id = envelope.data.get("room_id") if envelope is not None else None
        joined = client.rooms.get(room_id) if isinstance(room_id, int) else None
        key = (client.user.id, room_id if joined is not None and room_id is not None else 0)
        role = joined.access.role if joined is not None else Role.STUDENT
        wait = self._events.take(key, self._rates[role], now)
        if not wait:
            return True
        strikes = self._refusals.setdefault(client, Buckets())
        if strikes.take(0, REFUSALS, now):
            client.disconnect(CLOSE_POLICY_VIOLATION, "too many events; slow down")
            return False
        hint = retry_hint(wait)
        client.send("error", {"code": "rate_limited", "retry_after": hint,
                              "message": f"too many events; wait {hint:g} s"},
                    ref=envelope.ref if envelope is not None else None)
        return False
