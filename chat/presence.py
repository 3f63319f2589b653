"""Presence, coalesced: who is online in a room reaches its members as one `presence` frame
per room per interval listing every change, not one frame per join per member (a lecture's
start would otherwise cost O(N^2) frames).

`presence {room_id, changes: [{user_id, name, online}], online_count}`

Invariants:
- `RoomPresence.shown` is what members have been (or are about to be) told; a change is
  recorded only when a user's online-anywhere state differs from it, so a user's changes
  alternate online/offline;
- a join answer's snapshot is `shown` at the moment it is taken (`Joined.presence_seen` notes
  the change count then); each batch then gives every member only the changes after its
  snapshot: nothing lost, nothing twice. Members still replaying take the snapshot later,
  so they get no batch before it;
- within a batch a user's changes are netted: an even number of them (joined and left within
  one interval) is a no-op, an odd number is the last one;
- the first change after a quiet interval goes out at once, later ones wait for the interval;
- a big room's interval grows with its members (`room_interval`), so that a join storm costs
  each room at most about PRESENCE_FRAMES_PER_SECOND frames a second whatever its size: a
  lecture of 5,000 gets a batch every 2.5 s, not five a second (each batch is a send per
  member, and at five a second those sends were the largest single cost of the storm).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import attrs
import trio

from protocol.envelope import encode_data, encode_event
from protocol.wsframe import text_frame

from .turns import in_turns

if TYPE_CHECKING:
    from .fanout import LiveRoom

# Seconds between two presence frames of a room.
PRESENCE_INTERVAL: Final = 0.2
# Members served, or seconds spent, between two yields to other tasks (see fanout.FANOUT_TURN).
FLUSH_SLICE: Final = 256
FLUSH_TURN: Final = 0.0005
# Presence frames one room may cost per second, over all its members (see room_interval).
PRESENCE_FRAMES_PER_SECOND: Final = 2000


def room_interval(interval: float, members: int) -> float:
    """Seconds between two presence batches of a room with this many members' users here:
    `interval`, or longer for a room so big that its batches would exceed the budget."""
    return max(interval, members / PRESENCE_FRAMES_PER_SECOND)


@attrs.frozen
class Change:
    seq: int
    user_id: int
    name: str
    online: bool


@attrs.define(eq=False)
class RoomPresence:
    """One room's presence: who members were told is online, and the changes not yet sent."""

    # user id -> display name, online on any chat server, as members know it.
    shown: dict[int, str] = attrs.field(factory=dict)
    # The number of changes ever recorded; a change's seq is its position.
    seq: int = 0
    # Recorded changes not yet flushed, in order.
    unsent: list[Change] = attrs.field(factory=list)

    def record(self, user_id: int, name: str, *, online: bool) -> bool:
        """The user is (not) online anywhere now; True when that is a change."""
        if (user_id in self.shown) == online:
            return False
        if online:
            self.shown[user_id] = name
        else:
            name = self.shown.pop(user_id)
        self.seq += 1
        self.unsent.append(Change(self.seq, user_id, name, online))
        return True

    def take(self) -> list[Change]:
        changes, self.unsent = self.unsent, []
        return changes


def batch_frame(room_id: int, changes: list[Change], online_count: int) -> bytes | None:
    """The frame for these changes, netted per user; None when they cancel out."""
    last: dict[int, Change] = {}
    count: dict[int, int] = {}
    for change in changes:
        last.pop(change.user_id, None)  # keeps the order of each user's last change
        last[change.user_id] = change
        count[change.user_id] = count.get(change.user_id, 0) + 1
    listed = [{"user_id": c.user_id, "name": c.name, "online": c.online}
              for uid, c in last.items() if count[uid] % 2]
    if not listed:
        return None
    data = {"room_id": room_id, "changes": listed, "online_count": online_count}
    return text_frame(encode_event("presence", encode_data(data)))


async def flush(live: LiveRoom) -> None:
    """Send the room's unsent changes: one frame shared by every member whose snapshot
    predates them all (the presence view is the same for instructor and students: display
    names only), and the tail after its snapshot to a member who joined meanwhile."""
    changes = live.presence.take()
    if not changes:
        return
    first, online_count = changes[0].seq, len(live.presence.shown)
    shared = batch_frame(live.id, changes, online_count)
    tails: dict[int, bytes | None] = {}
    # The clock is read for each member (every=1): in a join storm most members of a batch
    # joined during it and each distinct snapshot needs its own tail frame (about 1 ms each
    # with a few hundred changes), so 256 members were up to 170 ms that everyone waited.
    async for (client,) in in_turns(live.clients(), seconds=FLUSH_TURN, most=FLUSH_SLICE):
        joined = client.rooms.get(live.id)
        if joined is None or joined.presence_seen is None:
            continue  # left, or its join answer (with the snapshot) is still to come
        seen = joined.presence_seen
        if seen < first:
            frame = shared
        elif seen in tails:
            frame = tails[seen]
        else:
            frame = tails[seen] = batch_frame(
                live.id, [c for c in changes if c.seq > seen], online_count)
        if frame is not None:
            client.deliver(live.id, frame)


class PresenceFlusher:
    """Flushes the rooms with unsent changes: at once after a quiet interval, then at most
    once per interval (the room's own, see room_interval)."""

    def __init__(self, *, interval: float = PRESENCE_INTERVAL) -> None:
        self._interval = interval
        self._dirty: dict[int, LiveRoom] = {}
        # When each recently flushed room may be flushed again (rooms quiet past it go).
        self._next: dict[int, float] = {}
        self._wake = trio.Event()

    def changed(self, live: LiveRoom) -> None:
        self._dirty[live.id] = live
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake = trio.Event()
            now = trio.current_time()
            due = [live for room_id, live in self._dirty.items()
                   if self._next.get(room_id, now) <= now]
            with trio.CancelScope(shield=True):
                for live in due:
                    del self._dirty[live.id]
                    self._next[live.id] = now + room_interval(self._interval,
                                                              len(live.by_user))
                    await flush(live)
            now = trio.current_time()
            for room_id in [r for r, at in self._next.items()
                            if at <= now and r not in self._dirty]:
                del self._next[room_id]
            if self._dirty:
                # Wake for the earliest due room; a change in a quiet room comes sooner.
                with trio.move_on_at(min(self._next.get(r, now) for r in self._dirty)):
                    await self._wake.wait()
            else:
                await self._wake.wait()
