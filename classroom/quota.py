"""How much one person may store in one room (a live session or a discussion): the bytes of
the events they sent, counted as stored. Past MAX_STORED_BYTES the event is refused with
QuotaExceeded and nothing is stored; the rate limit bounds how fast anyone gets there, this
bounds how much a session can cost the database whatever the pace.

Shared code has a budget of its own (MAX_CODE_BYTES): every save stores each changed file
whole, so a lab spends far more bytes on code than on talk, and one budget would let an
active editor lock themselves out of asking for help (or a chatty student out of sharing).

Each process learns everyone's totals in a room from the database once, with one query (the
first event anyone sends there after it starts: a class starting to talk cost one query per
person, a thousand in a second), then counts what it stores itself. With several chat
servers a person spread over k of them could store up to k times the cap: the price of not
asking the database on every event.
"""

from __future__ import annotations

from typing import Final

from storage import Storage

from .errors import TooLarge

MAX_STORED_BYTES: Final = 16 * 1024 * 1024
MAX_CODE_BYTES: Final = 64 * 1024 * 1024
CODE_EVENTS: Final = ("sharing/code_send", "sharing/code_update")
# Rooms x people remembered; past it the counts are forgotten and read again when needed.
MAX_TRACKED: Final = 100_000


class QuotaExceeded(TooLarge):
    code = "quota_exceeded"


class StoredBytes:
    def __init__(self, storage: Storage, *, limit: int = MAX_STORED_BYTES,
                 code_limit: int = MAX_CODE_BYTES) -> None:
        self._storage = storage
        self.limit = limit
        self.code_limit = code_limit
        self._used: dict[tuple[int, int, bool], int] = {}
        # Rooms whose totals were read: a person absent from `_used` stored nothing there.
        self._known_rooms: set[int] = set()

    async def charge(self, room_id: int, user_id: int, size: int, event: str) -> None:
        """Count `size` more bytes of `event` for the user in the room, or raise
        QuotaExceeded (nothing counted). Give them back with `refund` if the event is not
        stored after all."""
        code = event in CODE_EVENTS
        key = (room_id, user_id, code)
        used = self._used.get(key)
        if used is None:
            if room_id not in self._known_rooms:
                await self._learn(room_id)
            used = self._used.get(key, 0)
        limit = self.code_limit if code else self.limit
        if used + size > limit:
            self._used[key] = used
            what = "shared code" if code else "messages and work"
            raise QuotaExceeded(
                f"you have stored {used // 1024} KiB of {what} in this room; one person may "
                f"store at most {limit // (1024 * 1024)} MiB of {what} per session, and "
                f"this event is {max(1, size // 1024)} KiB")
        self._used[key] = used + size

    async def _learn(self, room_id: int) -> None:
        totals = await self._storage.stored_bytes_by_sender(room_id, CODE_EVENTS)
        if len(self._used) + len(totals) >= MAX_TRACKED:
            self._used.clear()
            self._known_rooms.clear()
        for (user_id, code), total in totals.items():
            # (Counted here meanwhile, by a charge that learnt the room at the same time.)
            self._used.setdefault((room_id, user_id, code), total)
        self._known_rooms.add(room_id)

    def refund(self, room_id: int, user_id: int, size: int, event: str) -> None:
        key = (room_id, user_id, event in CODE_EVENTS)
        if key in self._used:
            self._used[key] = max(0, self._used[key] - size)
