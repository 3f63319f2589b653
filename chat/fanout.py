"""Fan-out: the one path every stored event takes. Store first (getting the room's next
seq), then queue the same encoded frame for each member it is meant for, in seq order.

A room's events are stored concurrently (the database gives out the seqs, and stores events
arriving together in one transaction: storage/groupcommit.py), so a room's pace is not one
event per database round trip; they are sent one at a time, in seq order.

Invariants:
- `LiveRoom.lock` is held while an event is queued for every member and `last_seq` moves,
  so members receive a room's events in seq order, each once: an event stored here waits in
  `LiveRoom.unsent` until every event before it was sent; a gap that none of this server's
  appends in flight can fill is another process's, relayed from the database first (see
  relay.py);
- private events reach only the sender's and the recipient's connections.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from itertools import islice
from typing import Any, Final

import attrs
import trio

from classroom import Classroom, Room, RoomEvent, Services, StateWrite, User
from classroom.errors import ClassroomError
from classroom.lab import alerts_of
from classroom.rooms import RoomAccess
from protocol.envelope import encode_data, encode_event
from protocol.wsframe import text_frame

from . import metrics
from .client import Client
from .presence import RoomPresence
from .relay import Relay
from .turns import holding, in_turns

log = logging.getLogger("chat.fanout")
# A fan-out lets the other tasks run after FANOUT_TURN seconds of its own work, or after
# FANOUT_SLICE members at most. At 8-20 us a delivery a lecture of 5,000 is 40-100 ms of
# CPU, which no other client may wait for in one piece; and another client's event takes
# about ten turns of the scheduler (its frame read, the store's round trips, the answer), each
# waiting for the fan-out's slice: 0.5 ms slices keep that event well under 20 ms.
FANOUT_TURN: Final = 0.0005
FANOUT_SLICE: Final = 256
# Members served between two looks at the clock.
_CLOCK_EVERY: Final = 16
# Events stored while a room's fan-out runs go out together, one write per member, up to
# this much data: a lecture's send costs the same for one short event or a few (it is
# nearly all the kernel's `send`), and its readers are woken once for them.
FANOUT_RUN_BYTES: Final = 16 * 1024
# A hosted room keeps its latest events sent (with their frames) for joiners' history
# replay: a lecture's joins each replayed the session so far from the database (a query
# and an encoding per event per join, 11% of a 5,000 join storm).
RECENT_EVENTS: Final = 1000


@attrs.define(eq=False)
class Recent:
    """A room's latest events as sent, seqs `first`, `first` + 1, ... without a gap, each
    with its frame. A seq out of turn (a gap skipped, see FanOut._send_in_order) starts it
    over, so what it holds is always every event of its seq range."""

    first: int
    limit: int = RECENT_EVENTS
    held: deque[tuple[RoomEvent, bytes]] = attrs.field(factory=deque)

    def add(self, event: RoomEvent, frame: bytes) -> None:
        if event.seq != self.first + len(self.held):
            self.held.clear()
            self.first = event.seq
        self.held.append((event, frame))
        if len(self.held) > self.limit:
            self.held.popleft()
            self.first += 1

    def between(self, after: int, upto: int) -> list[tuple[RoomEvent, bytes]] | None:
        """Every event with a seq in (after, upto], or None when some are not held."""
        if after >= upto:
            return []
        if after + 1 < self.first or upto >= self.first + len(self.held):
            return None
        return list(islice(self.held, after + 1 - self.first, upto + 1 - self.first))


@attrs.define(eq=False)
class LiveRoom:
    """A room this chat server hosts now: its members' connections and its last seq sent."""

    room: Room
    instructor_id: int
    last_seq: int
    # Its class, as loaded with it: a lecture's joins need not read it again (RoomHub.access).
    classroom: Classroom | None = None
    lock: trio.Lock = attrs.field(factory=trio.Lock)
    # Its connections here by user. Changed only by `add` and `remove`, which keep
    # `clients()` true.
    by_user: dict[int, set[Client]] = attrs.field(factory=dict)
    # The class's members by user id, each as its join-answer JSON entries, encoded once per
    # room (see RoomHub._join_answer): the instructor's view offline and online, then the
    # students' view (no username) offline and online.
    members: dict[int, tuple[str, ...]] | None = None
    # Who is online in this room on other chat servers (told by the bus):
    # server -> user id -> display name.
    remote: dict[str, dict[int, str]] = attrs.field(factory=dict)
    # Students the instructor removed while the room is loaded (here or on another server):
    # every event of theirs is refused.
    banned: set[int] = attrs.field(factory=set)
    # Who members are told is online, and the changes waiting for the next batch.
    presence: RoomPresence = attrs.field(factory=RoomPresence)
    # Events this server stored and has not sent yet, by seq; how many of its appends are
    # still on their way; and the event set (then replaced) when one of those ends.
    unsent: dict[int, RoomEvent] = attrs.field(factory=dict)
    appending: int = 0
    appended: trio.Event = attrs.field(factory=trio.Event)
    # The latest events sent, for joiners' replay (see Recent).
    recent: Recent = attrs.field(init=False)
    # Every connection in one list, built again only after a join or a leave: built for
    # each event, a lecture of 5,000 spent 2-3 ms on it, in one piece, before every fan-out.
    _everyone: list[Client] | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        self.recent = Recent(first=self.last_seq + 1)

    @property
    def id(self) -> int:
        return self.room.id

    def clients(self) -> Sequence[Client]:
        """Every connection in the room here. The same list until someone joins or leaves
        (a new one then): a caller going through it in turns is not disturbed by a change."""
        if self._everyone is None:
            self._everyone = [client for clients in self.by_user.values()
                              for client in clients]
        return self._everyone

    def add(self, client: Client) -> bool:
        """A connection joined; True when it is its user's first here."""
        self._everyone = None
        clients = self.by_user.get(client.user.id)
        if clients is None:
            self.by_user[client.user.id] = {client}
            return True
        clients.add(client)
        return False

    def remove(self, client: Client) -> bool:
        """A connection left (if it was here); True when it was its user's last here."""
        clients = self.by_user.get(client.user.id)
        if clients is None or client not in clients:
            return False
        self._everyone = None
        clients.discard(client)
        if clients:
            return False
        del self.by_user[client.user.id]
        return True

    def online(self) -> set[int]:
        """Online on any chat server."""
        return set(self.by_user).union(*self.remote.values())

    def online_elsewhere(self, user_id: int) -> bool:
        return any(user_id in users for users in self.remote.values())

    async def deliver_event(self, event: RoomEvent) -> None:
        await self.deliver_events([event])

    async def deliver_events(self, events: Sequence[RoomEvent]) -> None:
        """Stored events, consecutive and in seq order, each to its audience: everyone, or
        its sender and recipient only; after each, the alerts it raises (made where it is
        delivered, so every chat server sends them to its own members, relayed events
        included). Called with the room's lock held, so the yields inside cannot reorder
        the room's events. A run of events for everyone reaches each member in one write
        (see FanOut._send_in_order)."""
        frames = [frame_of(event) for event in events]
        # Before the first yield: a join (under the same lock) that saw `last_seq` include
        # these events finds them held.
        for event, frame in zip(events, frames, strict=True):
            self.recent.add(event, frame)
        run: list[bytes] = []
        for event, frame in zip(events, frames, strict=True):
            alerts = alerts_of(event)
            if event.recipient_id is None:
                run.append(frame)
                if not alerts:
                    continue
            if run:
                await self.deliver_in_slices(b"".join(run))
                run = []
            if event.recipient_id is not None:
                await self.deliver_in_slices(frame, only=(event.sender_id, event.recipient_id))
            for alert in alerts:
                to = {"instructor": (self.instructor_id,),
                      "target": (event.recipient_id or 0,),
                      "students": tuple(u for u in self.by_user if u != self.instructor_id)}
                data = {"room_id": self.id, "status": alert.status, "message": alert.message,
                        "user_id": alert.user_id, "event": event.event,
                        "event_seq": event.seq}
                await self.deliver_in_slices(
                    text_frame(encode_event("alerts", encode_data(data))), only=to[alert.to])
        if run:
            await self.deliver_in_slices(b"".join(run))

    def _targets(self, only: tuple[int, ...] | None) -> Sequence[Client]:
        return (self.clients() if only is None
                else [c for uid in only for c in self.by_user.get(uid, ())])

    async def deliver_in_slices(self, frame: bytes, *,
                                only: tuple[int, ...] | None = None) -> None:
        """The frame to its members (`only` these users, or all), letting other tasks run
        after every FANOUT_TURN seconds of it (FANOUT_SLICE members at most). The yield is
        shielded: a stored event reaches every member even when the caller is being
        cancelled. A member who left the room meanwhile
        is skipped."""
        room_id = self.id
        async for chunk in in_turns(self._targets(only), seconds=FANOUT_TURN,
                                    most=FANOUT_SLICE, every=_CLOCK_EVERY):
            for client in chunk:
                if room_id in client.rooms:
                    client.deliver(room_id, frame)


def _take_run(live: LiveRoom) -> list[RoomEvent]:
    """The unsent events that follow the room's `last_seq` without a gap, taken and
    counted as sent: FANOUT_RUN_BYTES of data at most (the first whatever its size), since
    a member whose socket takes part of a write keeps its own copy of the rest."""
    run: list[RoomEvent] = []
    size = 0
    while (stored := live.unsent.get(live.last_seq + 1)) is not None:
        size += len(stored.data)
        if run and size > FANOUT_RUN_BYTES:
            break
        del live.unsent[stored.seq]
        live.last_seq = stored.seq
        run.append(stored)
    return run


def frame_of(event: RoomEvent) -> bytes:
    return text_frame(encode_event(event.event, event.data, seq=event.seq))


class FanOut:
    def __init__(self, services: Services, relay: Relay) -> None:
        self._services = services
        self._relay = relay

    async def publish(self, live: LiveRoom, event: str, sender: User,
                      recipient_id: int | None, data: dict[str, Any],
                      *, state: Sequence[StateWrite] = (),
                      client_id: str | None = None) -> RoomEvent:
        """Store the event with the room state it changes (one transaction), then send it to
        the room (recipient None) or to the sender and the recipient only. Whatever was
        stored is sent: nothing fails between the store and the queueing. A resend (the
        sender's `client_id` again) returns the first event, sent again to nobody."""
        await trio.lowlevel.checkpoint_if_cancelled()
        # Shielded (the storage layer has its own timeouts): a sender that hangs up, is
        # removed or times out mid-store must not leave an event stored but unsent, a gap
        # live members would only see after a resume.
        with trio.CancelScope(shield=True):
            live.appending += 1
            try:
                stored = await self._services.rooms.append(live.id, event, sender,
                                                           recipient_id, data, state=state,
                                                           client_id=client_id)
                if stored.room_id == live.id and stored.seq > live.last_seq:
                    # (A resend of an event another server stored is new here: sent now.)
                    live.unsent[stored.seq] = stored
            finally:
                live.appending -= 1
                live.appended.set()
                live.appended = trio.Event()
            if stored.room_id == live.id:
                await self._send_in_order(live, stored.seq)
        metrics.EVENTS_STORED.inc()
        metrics.EVENTS_DELIVERED.labels("local").inc()
        return stored

    async def _send_in_order(self, live: LiveRoom, seq: int) -> None:
        """Return once the room's events up to `seq` were sent: those stored here from
        `unsent`, in seq order; a gap, once none of this server's appends in flight can
        fill it, from the database (another process stored it)."""
        try:
            while seq > live.last_seq:
                async with holding(live.lock):
                    # Our event goes out with those before it and those stored after it
                    # that wait for the lock meanwhile (a busy room's next few): one write
                    # per member for all of them, not one each. Then the lock goes.
                    while live.last_seq < seq and (run := _take_run(live)):
                        await live.deliver_events(run)
                    if seq <= live.last_seq:
                        break
                    if not live.appending:
                        first = min(s for s in live.unsent if s > live.last_seq)
                        await self._caught_up(live, first)
                        if live.last_seq < first:  # the gap could not be filled: skipped
                            stored = live.unsent.pop(first)
                            live.last_seq = first
                            await live.deliver_event(stored)
                        continue
                    appended = live.appended
                await appended.wait()
        finally:
            # Sent meanwhile by someone else (relayed from the database), or sent now.
            for stale in [s for s in live.unsent if s <= live.last_seq]:
                del live.unsent[stale]

    async def close(self, live: LiveRoom, access: RoomAccess, user: User) -> bool:
        """Store `room/closed` and send it to everyone. False when the room had already
        ended (nothing sent)."""
        async with live.lock:
            with trio.CancelScope(shield=True):
                stored = await self._services.rooms.close(access, user)
                if stored is not None:
                    await self._caught_up(live, stored.seq)
                    live.last_seq = stored.seq
                    await live.deliver_event(stored)
        return stored is not None

    async def _caught_up(self, live: LiveRoom, seq: int) -> None:
        """Relay what others stored before our `seq`; if the database fails right now, our
        stored event is sent all the same (members fetch the skipped ones on resume)."""
        try:
            await self._relay.catch_up(live, seq)
        except ClassroomError as exc:
            log.warning("room %s: events before seq %s not relayed: %s", live.id, seq,
                        exc.message)
