"""Pages waiting for a class's live session: `class/watch {classroom_id}` subscribes a
connection to the class, and `class/live {classroom_id, room}` tells it when a session starts
or ends (`room` is the running session, or null), so a student waiting on the Live tab is
taken in without polling.

A session opened or ended in this process is announced at once (the domain's `on_change`
hook); one opened by another process (an app server) is found by one database look every
`WATCH_INTERVAL` seconds, made only while somebody watches.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import trio

from classroom import Room, Services
from classroom.errors import ClassroomError, Invalid
from classroom.rooms import LIVE
from classroom.rules import Action
from classroom.views import room_view

from .client import Client

log = logging.getLogger("chat.watch")
# Seconds between looks at the database for sessions other processes started.
WATCH_INTERVAL: Final = 1.0
# Classes one connection may watch at once (a page watches one).
MAX_WATCHED: Final = 8


class ClassWatch:
    def __init__(self, services: Services) -> None:
        self._services = services
        self._by_class: dict[int, set[Client]] = {}
        self._by_client: dict[Client, set[int]] = {}
        # The running session's id per watched class as last announced (None: none).
        self._known: dict[int, int | None] = {}
        services.rooms.on_change(self.changed)

    async def watch(self, client: Client, classroom_id: int, ref: int | None) -> None:
        """Subscribe (members only) and answer with the class's running session now."""
        await self._services.classes.authorize(client.user, classroom_id, Action.VIEW_CLASS)
        watched = self._by_client.setdefault(client, set())
        if classroom_id not in watched and len(watched) >= MAX_WATCHED:
            raise Invalid(f"a connection watches at most {MAX_WATCHED} classes")
        room = await self._services.rooms.current_session(classroom_id)
        watched.add(classroom_id)
        self._by_class.setdefault(classroom_id, set()).add(client)
        self._known[classroom_id] = room.id if room else None
        client.send("class/live", _live(classroom_id, room), ref=ref)

    def forget(self, client: Client) -> None:
        for classroom_id in self._by_client.pop(client, set()):
            self._unwatch(classroom_id, client)

    def _unwatch(self, classroom_id: int, client: Client) -> None:
        clients = self._by_class.get(classroom_id)
        if clients is not None:
            clients.discard(client)
            if not clients:
                del self._by_class[classroom_id]
                self._known.pop(classroom_id, None)

    def watched(self) -> list[int]:
        """The classes someone here watches."""
        return list(self._by_class)

    def watchers(self, classroom_id: int) -> list[Client]:
        return list(self._by_class.get(classroom_id, ()))

    def stop(self, classroom_id: int, clients: list[Client]) -> None:
        """Stop telling these connections the class's news (their users left it)."""
        for client in clients:
            self._by_client.get(client, set()).discard(classroom_id)
            self._unwatch(classroom_id, client)

    def changed(self, room: Room) -> None:
        if room.kind == LIVE and room.classroom_id in self._by_class:
            self._announce(room.classroom_id, room if room.is_open else None)

    def _announce(self, classroom_id: int, room: Room | None) -> None:
        now = room.id if room else None
        if self._known.get(classroom_id, -1) == now:
            return
        self._known[classroom_id] = now
        data = _live(classroom_id, room)
        for client in self._by_class.get(classroom_id, ()):
            client.send("class/live", data)

    async def follow(self, *, interval: float = WATCH_INTERVAL) -> None:
        """Announce sessions started or ended by other processes."""
        while True:
            await trio.sleep(interval)
            watched = list(self._by_class)
            if not watched:
                continue
            try:
                running = await self._services.rooms.live_now(watched)
            except ClassroomError as exc:
                log.warning("cannot look for live sessions: %s", exc.message)
                continue
            for classroom_id in watched:
                if classroom_id in self._by_class:
                    self._announce(classroom_id, running.get(classroom_id))


def _live(classroom_id: int, room: Room | None) -> dict[str, Any]:
    return {"classroom_id": classroom_id, "room": room_view(room) if room else None}
