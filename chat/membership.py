"""Students who are no longer members of a class leave its live rooms here, and hear no more
of its sessions starting (`class/watch`): removed by the instructor, or left it themselves.
Their connections stayed joined otherwise, receiving the room's events, until they sent one
(whose check refuses it).

Every change to a class (a member removed or leaving, but also a post) drops what the
process's cache keeps of it, on every process within the cache's STALE_AFTER (2 s); that
asks for a check of the rooms of that class hosted here: one query for the class's member
ids, then whoever of the room's people is not among them is taken out (`room/kill` with the
reason, as a kick is told). Checks come at most every CHECK_GAP seconds, each covering every
class named meanwhile: a class posting often costs one query per gap, not one per post.

A database outage removes nobody: the check is tried again at the next change.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Final

import trio

from classroom import Services
from classroom.errors import ClassroomError

from .fanout import LiveRoom
from .hub import RoomHub

log = logging.getLogger("chat.membership")

CHECK_GAP: Final = 0.5
NOT_A_MEMBER: Final = "you are no longer a member of this class"


class MembershipWatch:
    def __init__(self, services: Services, hub: RoomHub, *, gap: float = CHECK_GAP) -> None:
        self._classes = services.classes
        self._hub = hub
        self._gap = gap
        # Classes to check (None: every class hosted here), and the wake-up for them.
        self._due: set[int | None] = set()
        self._wake = trio.Event()
        self._failing = False
        self._classes.on_members_may_have_changed(self.check_soon)

    def check_soon(self, classroom_id: int | None) -> None:
        self._due.add(classroom_id)
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            due, self._due = self._due, set()
            await self.check(due)
            await trio.sleep(self._gap)

    async def check(self, due: set[int | None]) -> None:
        rooms: dict[int, list[LiveRoom]] = defaultdict(list)
        for live in self._hub.hosted():
            if None in due or live.room.classroom_id in due:
                rooms[live.room.classroom_id].append(live)
        watch = self._hub.watch
        watched = {c for c in watch.watched() if None in due or c in due}
        for classroom_id in rooms.keys() | watched:
            lives = rooms.get(classroom_id, [])
            if classroom_id not in watched and not any(
                    uid != live.instructor_id for live in lives for uid in live.by_user):
                continue  # nobody but the instructor here: nothing to ask
            # Who is here before the query: one who joins the class and then the room while
            # it runs is missing from its answer, and must not be taken for gone.
            present = {(live.id, uid) for live in lives for uid in live.by_user}
            watchers = watch.watchers(classroom_id)
            try:
                members = await self._classes.member_ids(classroom_id)
            except ClassroomError as exc:
                # (A database outage asks for a check at every poll of the cache: said once.)
                if not self._failing:
                    log.warning("membership checks skipped: %s", exc.message)
                self._failing = True
                continue
            self._failing = False
            watch.stop(classroom_id, [c for c in watchers if c.user.id not in members])
            for live in lives:
                for user_id in [uid for uid in live.by_user
                                if uid not in members and (live.id, uid) in present]:
                    await self._hub.remove(live, user_id, ban=False, message=NOT_A_MEMBER)
