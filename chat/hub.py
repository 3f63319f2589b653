"""The registry: the rooms this chat server hosts right now and who is connected to each,
joining (with history replay) and leaving. The other jobs have their own modules: fan-out
(fanout.py), relay between servers (relay.py), departures during an outage (departures.py).

Invariants:
- a client joining with `after=N` is registered under the same lock, noting the last seq;
  stored history (N, last] is replayed from the database, and live frames that arrive
  meanwhile wait in `Joined.pending`: nothing lost, nothing twice.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from itertools import islice
from typing import Any, Final

import trio

from classroom import RoomEvent, Services, StateWrite, User
from classroom.rooms import RoomAccess
from classroom.rules import Action, may
from classroom.views import user_view
from protocol.envelope import encode_data

from .arrivals import Arrivals
from .client import Client, Joined
from .crossing import Crossing
from .departures import Departures
from .fanout import FanOut, LiveRoom, frame_of
from .lease import Lease
from .presence import PRESENCE_INTERVAL, PresenceFlusher
from .relay import SYNC_INTERVAL, Relay
from .watch import ClassWatch

# History replays in pages of this many events.
REPLAY_PAGE: Final = 500
# A student's join answer lists the instructor and at most this many members online (see
# _join_answer); presence batches then tell of every arrival after it.
LISTED_ONLINE: Final = 100


class RoomHub:
    def __init__(self, services: Services, server_name: str, *,
                 presence_interval: float = PRESENCE_INTERVAL,
                 listed_online: int = LISTED_ONLINE) -> None:
        self._services = services
        self.listed_online = listed_online
        self._rooms: dict[int, LiveRoom] = {}
        self.server_name = server_name
        # Every connection by user, to tell members of a class about a new room.
        self.by_user: dict[int, set[Client]] = {}
        self.relay = Relay(services)
        self.fanout = FanOut(services, self.relay)
        # Departures' and joins' attendance, each written together (group commit); the
        # departures noted before a round of joins are written first.
        self.departures = Departures(services)
        self.arrivals = Arrivals(services, before=self.departures.write)
        self.lease = Lease(services)
        self.watch = ClassWatch(services)
        # The bus listener: presence, kicks, new rooms and ended sign-ins from other servers.
        self.crossing = Crossing(services, self)
        # Set at shutdown: every connection here is closing, so members here are not told
        # of each other's departures (N leaving N would be N^2 frames, written in the
        # connections' shielded cleanup, which shutdown cannot cut short).
        self.closing = False
        # Members hear who came and went in one batch per room per interval.
        self.presence = PresenceFlusher(interval=presence_interval)

    def connected(self, client: Client) -> None:
        self.by_user.setdefault(client.user.id, set()).add(client)

    async def disconnected(self, client: Client) -> None:
        self.watch.forget(client)
        clients = self.by_user.get(client.user.id)
        if clients is not None:
            clients.discard(client)
            if not clients:
                del self.by_user[client.user.id]
        for room_id in list(client.rooms):
            await self.detach(room_id, client)

    def live(self, room_id: int) -> LiveRoom | None:
        return self._rooms.get(room_id)

    def hosted(self) -> list[LiveRoom]:
        return list(self._rooms.values())

    async def _load(self, access: RoomAccess) -> LiveRoom:
        live = self._rooms.get(access.room.id)
        if live is None:
            # Read afresh: the room may have been unloaded (last member gone) after events
            # newer than `access` was read; a stale last_seq would skip them on replay.
            room = await self._services.rooms.reload(access.room.id) or access.room
            live = self._rooms.get(room.id)  # loaded by someone else meanwhile?
            if live is not None:
                return live
            live = LiveRoom(room=room, instructor_id=access.instructor_id, last_seq=room.last_seq,
                            classroom=access.classroom)
            self._rooms[room.id] = live
            if self.relay.bus_wanted:
                # Who is in it on other chat servers (answered by `here`, see crossing.py).
                self._services.bus.announce("who", {"room_ids": [room.id]})
            await self._services.rooms.claim(room.id, self.server_name,
                                             replacing=room.chat_server)
        return live

    # -- joining and leaving -------------------------------------------------------------

    async def access(self, user: User, room_id: int) -> RoomAccess:
        """`Rooms.access` for joining; for a room hosted here, from the room and class it
        was loaded with (a lecture's joins come together: two database reads fewer each,
        on a database they queue for). The room's copy is current: a close anywhere
        unloads it (at once with the bus, within SYNC_INTERVAL without)."""
        live = self._rooms.get(room_id)
        if live is None or live.classroom is None:
            return await self._services.rooms.access(user, room_id)
        return await self._services.rooms.access_to(user, live.room, live.classroom)

    async def attach(self, client: Client, access: RoomAccess, after: int,
                     ref: int | None) -> None:
        """Join (or resume) a room: the `room/join` answer, then stored history after
        `after`, then live events."""
        room_id = access.room.id
        if room_id in client.rooms:
            # First, so that leaving cannot unload the very LiveRoom we are about to join.
            await self.detach(room_id, client, announce=False)
        user = client.user
        while True:
            live = await self._load(access)
            async with live.lock:
                if self._rooms.get(room_id) is not live:
                    continue  # unloaded while we waited for the lock: load it again
                first_connection = live.add(client)
                joined = Joined(access=access, pending=[])
                client.rooms[room_id] = joined
                upto = live.last_seq
            break
        try:
            # Recorded before the answer, so whoever sees the join also sees the attendance.
            await self.lease.ready.wait()
            await self.arrivals.record(live.room, user, self.server_name,
                                       written=lambda: self._arrived(joined, user))
            if first_connection:
                # Before the answer: the joiner's snapshot then lists itself, and the batch
                # carrying its arrival skips it.
                self._presence(live, user, online=True)
            client.send_json("room/join", await self._join_answer(live, access, client),
                             ref=ref)
            await self._replay(client, live, user, after, upto)
        except BaseException:
            await self.detach(room_id, client)
            raise
        pending, joined.pending = joined.pending or [], None
        for frame in pending:
            client.deliver(room_id, frame)

    async def _replay(self, client: Client, live: LiveRoom, user: User, after: int,
                      upto: int) -> None:
        held = live.recent.between(after, upto)
        if held is not None:
            # From the room's memory: the same events the database has, as they were sent.
            me = user.id
            for event, frame in held:
                if event.recipient_id is None or me in (event.sender_id, event.recipient_id):
                    await client.outbox.push_patiently(frame)
            return
        while after < upto:
            events = await self._services.rooms.replay(live.id, user.id, after=after,
                                                       limit=REPLAY_PAGE)
            events = [e for e in events if e.seq <= upto]
            for event in events:
                await client.outbox.push_patiently(frame_of(event))
            if len(events) < REPLAY_PAGE:
                break
            after = events[-1].seq

    async def _join_answer(self, live: LiveRoom, access: RoomAccess, client: Client) -> str:
        """The `room/join` answer's data as JSON text. A lecture's thousand joins each list
        the instructor's roster or up to `listed_online` members, so each member's entry is
        encoded once, not once per join."""
        room_id = live.id
        if live.members is None or client.user.id not in live.members:
            # Loaded once per room, again only when someone new to it arrives (a student who
            # joined the class after the room loaded).
            roster = await self._services.rooms.members(access.room.classroom_id)
            live.members = {}
            for user, role in roster:
                full = {**user_view(user), "role": role.value}
                brief = {"id": user.id, "display_name": user.display_name, "role": role.value}
                live.members[user.id] = tuple(encode_data({**entry, "online": online})
                                              for entry in (full, brief)
                                              for online in (False, True))
        # The snapshot presence batches continue from (see presence.py).
        shown = live.presence.shown
        online_count = len(shown)
        joined = client.rooms.get(room_id)
        if joined is not None:  # (it may have left meanwhile, kicked)
            joined.presence_seen = live.presence.seq
        entries = live.members
        if may(access.role, Action.VIEW_ROSTER):
            online: Collection[int] = set(shown)
            members = ",".join(entry[uid in online] for uid, entry in entries.items())
        else:
            # The roster is the instructor's: others see the instructor and who is here now,
            # by display name (a username is a login name); in a big room only the first
            # `listed_online` of them (themselves among them) and `online_count`: listing
            # everyone made each answer O(N), a lecture's join storm O(N^2) bytes.
            online = ()  # (a student's lab state does not look at it)
            me, teacher = client.user.id, live.instructor_id
            listed = [uid for uid in (teacher, me) if uid in entries]
            listed += islice((uid for uid in shown
                              if uid != me and uid != teacher and uid in entries),
                             max(0, self.listed_online - 1))
            members = ",".join(entries[uid][2 + (uid in shown)] for uid in listed)
        room = live.room
        state = await self._services.lab.state(access, client.user, online)
        head = encode_data({
            "state": state,
            "room": {"id": room.id, "classroom_id": room.classroom_id, "kind": room.kind,
                     "topic": room.topic, "open": room.is_open, "last_seq": live.last_seq,
                     "instructor_id": live.instructor_id, "chat_server": self.server_name},
            "you": {**user_view(client.user), "role": access.role.value},
            "online_count": online_count,
        })
        return f'{head[:-1]},"members":[{members}]}}'

    def _arrived(self, joined: Joined, user: User) -> None:
        """The join's attendance is stored; if it left meanwhile (removed, the room closed),
        its departure is due now."""
        joined.arrived = True
        if joined.left:
            self.departures.record(joined.access.room, user, self.server_name)

    async def detach(self, room_id: int, client: Client, *, announce: bool = True) -> None:
        joined = client.rooms.pop(room_id, None)
        if joined is None:
            return
        # The departure follows the arrival: now if it is stored; once it is (_arrived) if
        # it is being written; never if it never will be (the join failed or was cancelled
        # first), or a connection counted once would be taken off twice.
        joined.left = True
        if joined.arrived:
            self.departures.record(joined.access.room, client.user, self.server_name)
        live = self._rooms.get(room_id)
        if live is None:
            return
        user = client.user
        if live.remove(client) and announce:
            self._presence(live, user, online=False)
        if not live.by_user:
            del self._rooms[room_id]  # reloaded from the database on the next join

    def _presence(self, live: LiveRoom, user: User, *, online: bool) -> None:
        """The user's first connection to the room here arrived, or the last one left."""
        if self.relay.bus_wanted:
            self._services.bus.announce("presence", {
                "room_id": live.id, "user_id": user.id, "name": user.display_name,
                "online": online})
        if not self.closing:
            self._tell(live, user.id, user.display_name)

    def _tell(self, live: LiveRoom, user_id: int, name: str) -> None:
        """Members hear (in the next batch) when the user's online-anywhere state changed."""
        online = user_id in live.by_user or live.online_elsewhere(user_id)
        if live.presence.record(user_id, name, online=online):
            self.presence.changed(live)

    def remote_presence(self, live: LiveRoom, server: str, user_id: int, name: str, *,
                        online: bool) -> None:
        """Another chat server's user arrived in (or left) a room hosted here too.
        O(1): a lecture's thousand arrivals elsewhere must not cost a thousand scans."""
        users = live.remote.setdefault(server, {})
        if online:
            users[user_id] = name
        else:
            users.pop(user_id, None)
            if not users:
                del live.remote[server]
        self._tell(live, user_id, name)

    def remote_roster(self, live: LiveRoom, server: str, users: dict[int, str]) -> None:
        """Everyone online in `live` on `server` now; members here hear of each change to
        who is online anywhere."""
        known = live.remote.pop(server, {})
        if users:
            live.remote[server] = users
        for user_id in known.keys() - users.keys():
            self._tell(live, user_id, known[user_id])
        for user_id, name in users.items():
            self._tell(live, user_id, name)

    async def remove(self, live: LiveRoom, user_id: int, *, ban: bool = True,
                     message: str = "the instructor removed you from this room") -> None:
        """The instructor removed the student from the room (here or on another server):
        their connections leave it, and (`ban`) any event of theirs in it is refused. Not
        banned: they are no longer in the class (chat/membership.py); joining again asks
        the class."""
        if ban:
            live.banned.add(user_id)
        for client in list(live.by_user.get(user_id, ())):
            await self.detach(live.id, client)
            client.send("room/kill", {"room_id": live.id, "user_id": user_id,
                                      "message": message})

    # -- publishing and ending ------------------------------------------------------------

    async def publish(self, live: LiveRoom, event: str, sender: User,
                      recipient_id: int | None, data: dict[str, Any],
                      *, state: Sequence[StateWrite] = (),
                      client_id: str | None = None) -> RoomEvent:
        """See FanOut.publish."""
        return await self.fanout.publish(live, event, sender, recipient_id, data,
                                         state=state, client_id=client_id)

    async def close(self, live: LiveRoom, access: RoomAccess, user: User) -> bool:
        """End the room: `room/closed` stored and sent to everyone, then all leave.
        False when it had already ended (nothing sent)."""
        closed = await self.fanout.close(live, access, user)
        if closed:
            await self._unload(live)
        return closed

    async def ended(self, live: LiveRoom) -> None:
        if self._rooms.get(live.id) is live:
            await self._unload(live)

    async def _unload(self, live: LiveRoom) -> None:
        for client in live.clients():
            await self.detach(live.id, client, announce=False)
        if self._rooms.get(live.id) is live:
            del self._rooms[live.id]

    async def follow_database(self, *, interval: float = SYNC_INTERVAL) -> None:
        """The background jobs: relaying other servers' events, writing late departures."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: self.relay.follow(self, interval=interval))
            nursery.start_soon(lambda: self.departures.run(interval=interval))
            nursery.start_soon(self.lease.keep, self.server_name)
            nursery.start_soon(self.presence.run)
            nursery.start_soon(self.arrivals.run)
            if self.relay.bus_wanted:
                nursery.start_soon(self.crossing.watch_servers)

