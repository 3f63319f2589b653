"""Ending live connections whose sign-in ended: logout (page or API), expiry, a password
change. Every open connection's sign-in is checked every CHECK_INTERVAL seconds (expiry is
noticed only this way), by `Accounts.ended_sessions`: the process's cache vouches for the
sign-ins it holds (it forgets a user's as soon as it reads their change from the log, within
its STALE_AFTER bound), one query asks the database about the rest. A logout in this same
process, one announced on the bus (chat/crossing.py), or one the cache reads from the log asks
for a check at once. A connection whose sign-in ended is closed with CLOSE_SIGNED_OUT and the
reason.

A database outage ends nobody: the check is skipped and tried again next time.
"""

from __future__ import annotations

import logging
from typing import Final

import trio

from classroom import Services
from classroom.errors import ClassroomError

from .client import Client

log = logging.getLogger("chat.sessions")

CHECK_INTERVAL: Final = 2.0
# Sign-ins looked up between two turns of the other tasks.
CHECK_SLICE: Final = 1000
# Private-range close code: HTTP's 401 in the WebSocket registry's application range.
CLOSE_SIGNED_OUT: Final = 4401


class SessionWatch:
    def __init__(self, services: Services, *, interval: float = CHECK_INTERVAL) -> None:
        self._accounts = services.accounts
        self._interval = interval
        # The connections watched, by sign-in: the keys are the distinct sign-ins to check,
        # and an ended one finds its connections without a look at every other.
        self._by_key: dict[str, set[Client]] = {}
        self._wake = trio.Event()
        self._accounts.on_sessions_ended(self.check_soon)

    def watch(self, client: Client, token: str) -> None:
        key = client.session_key = self._accounts.session_key(token)
        self._by_key.setdefault(key, set()).add(client)

    def forget(self, client: Client) -> None:
        if client.session_key is None:
            return
        clients = self._by_key.get(client.session_key)
        if clients is not None:
            clients.discard(client)
            if not clients:
                del self._by_key[client.session_key]

    def check_soon(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            with trio.move_on_after(self._interval):
                await self._wake.wait()
            self._wake = trio.Event()
            await self.check()

    async def check(self) -> None:
        """Close every watched connection whose sign-in has ended, CHECK_SLICE sign-ins at
        a time (looking up 5,000 at once was a step of 3 ms that every client waited for)."""
        keys = list(self._by_key)
        for start in range(0, len(keys), CHECK_SLICE):
            if start:
                await trio.lowlevel.checkpoint()
            try:
                ended = await self._accounts.ended_sessions(keys[start:start + CHECK_SLICE])
            except ClassroomError as exc:
                log.warning("sign-in check skipped: %s", exc.message)
                return
            for key, reason in ended.items():
                for client in self._by_key.pop(key, ()):
                    client.disconnect(CLOSE_SIGNED_OUT, reason)
