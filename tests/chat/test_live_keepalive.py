"""Keepalive: the chat server pings every connection; one that answers stays, one that stops
answering is dropped within ping interval + ping timeout, and leaves its rooms like any other
disconnect (others see it go offline; attendance shows no open connection).

The silent peer is a raw socket spoken to with wsproto: it completes the handshake and joins a
room, answering pings while it listens, then stops reading altogether (as a laptop that went to
sleep, or a peer behind a dead NAT entry), so nothing answers the server's pings any more.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from tests.chat.harness import (
    ChatWorld,
    Frame,
    Person,
    chat_world,
    presence_changes,
    shows_presence,
    shows_someone_offline,
)

PING_INTERVAL = 0.2
PING_TIMEOUT = 0.3
# Scheduling, the closing itself and the attendance write, on a busy test machine.
MARGIN = 0.5


class RawClient:
    """A WebSocket client that reads (and so answers pings) only while `listening`."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.log: list[Frame] = []
        self.pings = 0
        self.ping_times: list[float] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.eof = False
        self._text: list[str] = []
        self._changed = trio.Event()
        self._send_lock = trio.Lock()
        self._listening: trio.CancelScope | None = None
        self._ref = 0

    async def _send(self, event: Event) -> None:
        async with self._send_lock:
            await self.stream.send_all(self.ws.send(event))

    async def _receive(self) -> list[Event]:
        data = await self.stream.receive_some(65536)
        if not data:
            self.eof = True
        self.ws.receive_data(data or None)
        return list(self.ws.events())

    async def handshake(self, port: int, token: str) -> None:
        await self._send(Request(host=f"127.0.0.1:{port}", target="/ws",
                                 extra_headers=[(b"authorization", f"Bearer {token}".encode())]))
        while True:
            for event in await self._receive():
                assert not isinstance(event, RejectConnection), event
                if isinstance(event, AcceptConnection):
                    return

    async def listen(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                     ) -> None:
        """Read and handle frames (answering pings) until `go_silent()` or the end."""
        with trio.CancelScope() as self._listening:
            task_status.started()
            while not self.eof and self.close_code is None:
                for event in await self._receive():
                    await self._handle(event)
                self._changed.set()
                self._changed = trio.Event()

    async def _handle(self, event: Event) -> None:
        if isinstance(event, Ping):
            self.pings += 1
            self.ping_times.append(trio.current_time())
            if self.ws.state is ConnectionState.OPEN:  # not once the server is closing
                await self._send(event.response())
        elif isinstance(event, TextMessage):
            self._text.append(event.data)
            if event.message_finished:
                self.log.append(json.loads("".join(self._text)))
                self._text = []
        elif isinstance(event, CloseConnection):
            self.close_code, self.close_reason = event.code, event.reason

    def go_silent(self) -> None:
        """Stop reading: from now on nothing answers the server's pings."""
        assert self._listening is not None
        self._listening.cancel()

    async def wait_for(self, match: Callable[[], bool]) -> None:
        while not match():
            await self._changed.wait()

    async def request(self, event: str, data: dict[str, Any]) -> Frame:
        """Send; the answer (the frame with the same ref). Needs `listen` running."""
        self._ref += 1
        ref = self._ref
        await self._send(TextMessage(json.dumps({"event": event, "data": data, "ref": ref})))
        await self.wait_for(lambda: any(f.get("ref") == ref for f in self.log))
        return next(f for f in self.log if f.get("ref") == ref)

    async def sync(self) -> None:
        """Round trip an event the server refuses (as Peer.sync): the events sent before it
        have been handled."""
        answer = await self.request("harness/sync", {})
        assert answer["event"] == "error" and answer["data"]["code"] == "invalid", answer


@asynccontextmanager
async def raw_client(world: ChatWorld, person: Person) -> AsyncIterator[RawClient]:
    stream = await trio.open_tcp_stream("127.0.0.1", world.port)
    try:
        client = RawClient(stream)
        await client.handshake(world.port, person.token)
        async with trio.open_nursery() as nursery:
            await nursery.start(client.listen)
            yield client
            nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(stream)


async def open_connections(world: ChatWorld, teacher: Person, room_id: int,
                           who: Person) -> int:
    _, records = await world.services.rooms.attendance(teacher.user, room_id)
    (mine,) = [r for r in records if r.user.id == who.id]
    return mine.open_connections


async def test_clients_that_answer_pings_stay_connected(db_url: str) -> None:
    with trio.fail_after(10):
        async with chat_world(db_url, ping_interval=PING_INTERVAL,
                              ping_timeout=PING_TIMEOUT) as world:
            lesson = await world.live_class("teacher", "ann")
            teacher, ann = lesson.people
            rid = lesson.room.id
            async with world.connect(teacher) as t, raw_client(world, ann) as a:
                await t.join(rid)
                assert (await a.request("room/join", {"room_id": rid}))["event"] == "room/join"
                await a.sync()
                await trio.sleep(6 * PING_INTERVAL)  # idle, but for the pings
                assert a.pings >= 4, a.pings
                assert world.server.clients == 2
                assert a.close_code is None and not a.eof
                # Both still in the room: a message reaches both, nobody went offline.
                await t.request("message", {"room_id": rid, "text": "still here?"})
                await a.wait_for(lambda: any(f["data"].get("text") == "still here?"
                                             for f in a.log))
                await t.sync()
                assert not [f for f in t.log if shows_someone_offline(f)]
                assert await open_connections(world, teacher, rid, ann) == 1


async def test_a_peer_that_stops_answering_is_dropped_and_leaves_the_room(
        db_url: str) -> None:
    with trio.fail_after(10):
        async with chat_world(db_url, ping_interval=PING_INTERVAL,
                              ping_timeout=PING_TIMEOUT) as world:
            lesson = await world.live_class("teacher", "ann")
            teacher, ann = lesson.people
            rid = lesson.room.id
            async with world.connect(teacher) as t, raw_client(world, ann) as a:
                await t.join(rid)
                assert (await a.request("room/join", {"room_id": rid}))["event"] == "room/join"
                await a.sync()  # the join is handled (attendance recorded) by now
                await t.have(shows_presence(ann.id, True))
                assert await open_connections(world, teacher, rid, ann) == 1

                a.go_silent()
                silent_at = trio.current_time()
                gone = await t.next("presence")
                took = trio.current_time() - silent_at
                assert presence_changes([gone], ann.id) == [False], gone
                bound = PING_INTERVAL + PING_TIMEOUT + MARGIN
                assert took < bound, f"the silent peer was dropped after {took:.2f} s"
                while await open_connections(world, teacher, rid, ann):
                    assert trio.current_time() - silent_at < bound + MARGIN
                    await trio.sleep(0.01)
                # The teacher, who answers pings, is unharmed.
                await t.sync()
                await t.request("message", {"room_id": rid, "text": "ann left"})
                # What the server said when it let ann go: read it now (1001, "no answer").
                with trio.fail_after(5):
                    await a.listen()
                assert a.close_code == 1001, (a.close_code, a.close_reason)
                assert a.close_reason is not None and "ping" in a.close_reason
                assert not [f for f in a.log if f["data"].get("text") == "ann left"]



async def test_pings_of_connections_that_opened_together_go_out_a_few_at_a_time(
        db_url: str) -> None:
    """A lecture's members connect together, so their pings fall due together; starting
    them all at once (and taking all their pongs at once) made every other client wait for
    one long round of the scheduler. At most `pings_per_tick` start each look."""
    count, interval = 16, 0.3
    tick = interval / 10  # see PING_TICK
    with trio.fail_after(20):
        async with chat_world(db_url, ping_interval=interval, ping_timeout=5.0,
                              pings_per_tick=1) as world:
            lesson = await world.live_class("teacher", *(f"s{i}" for i in range(count)))
            opened: list[float] = []
            clients: list[RawClient] = []
            all_pinged = trio.Event()

            async def one(person: Person) -> None:
                async with raw_client(world, person) as client:
                    opened.append(trio.current_time())
                    clients.append(client)
                    await client.wait_for(lambda: client.pings >= 1)
                    if all(c.pings for c in clients) and len(clients) == count:
                        all_pinged.set()
                    await all_pinged.wait()  # connected until all were pinged

            async with trio.open_nursery() as nursery:
                for person in lesson.people[1:]:
                    nursery.start_soon(one, person)
            first_pings = sorted(c.ping_times[0] for c in clients)
            opened_over = max(opened) - min(opened)
            pinged_over = first_pings[-1] - first_pings[0]
            # One ping a look: the 16 first pings take at least 15 looks.
            assert pinged_over >= opened_over + 0.6 * (count - 1) * tick, (
                opened_over, pinged_over)
            # And none waits long: every connection was pinged within a few intervals.
            assert first_pings[-1] - min(opened) < interval + count * tick + 1.0
