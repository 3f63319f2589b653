"""A real chat server (and its database) in-process, and real WebSocket clients for it.

`chat_world(db_url)` runs a ChatServer on port 0 over a fresh schema; `world.connect(person)`
opens a trio-websocket client (`Peer`) that speaks the envelope protocol and keeps a log of
every frame it received, so a test can ask afterwards what reached whom.
`chat_servers(db_url, 2)` runs several chat servers, each with its own storage connections
to one database, as several chat server hosts would (the `two_chat_servers` fixture of
tests/chat/conftest.py).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, Final

import attrs
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    open_websocket_url,
    wrap_client_stream,
)

from chat import ChatServer
from chat.bus import RedisBus
from classroom import Services
from classroom.accounts import _HASHER, SESSION_COOKIE, SESSION_LIFETIME, hash_token
from classroom.clock import Clock
from classroom.ratelimit import Rate
from classroom.rules import Role
from storage import Classroom, Room, User, open_storage

ORIGIN: Final = "http://site.example"
# For tests that flood a room on purpose (backpressure, races): no rate limit in the way.
UNLIMITED: Final = {role: Rate(burst=1e9, per_second=1e9) for role in Role}
# One argon2 hash for every test user: sign-up's hashing is the slow part of making people.
_PASSWORD: Final = "password123"
_PASSWORD_HASH: Final = _HASHER.hash(_PASSWORD)

Frame = dict[str, Any]


def presence_changes(frames: list[Frame], user_id: int) -> list[bool]:
    """The user's online states in these `presence` batches, in order."""
    return [change["online"] for f in frames if f["event"] == "presence"
            for change in f["data"]["changes"] if change["user_id"] == user_id]


def shows_presence(user_id: int, online: bool) -> Callable[[Frame], bool]:
    """Matches a `presence` batch that lists the user going online (offline)."""
    return lambda f: f["event"] == "presence" and presence_changes([f], user_id) == [online]


def presence_view(frames: list[Frame]) -> dict[int, bool]:
    """Who these frames say is online: the last `room/join` answer's members, then the
    `presence` batches after it. A change that changes nothing (shown twice) fails."""
    joins = [i for i, f in enumerate(frames) if f["event"] == "room/join"]
    if not joins:
        return {}
    online = {m["id"]: m["online"] for m in frames[joins[-1]]["data"]["members"]}
    for frame in frames[joins[-1] + 1:]:
        if frame["event"] != "presence":
            continue
        for change in frame["data"]["changes"]:
            assert set(change) == {"user_id", "name", "online"}, change
            assert online.get(change["user_id"], False) != change["online"], (
                f"shown twice: {change} after {online}")
            online[change["user_id"]] = change["online"]
        assert frame["data"]["online_count"] == sum(online.values()), frame
    return online


async def until_online(peer: Peer, expected: set[int]) -> None:
    """Read until the peer's presence view is exactly `expected` online."""
    while {uid for uid, on in presence_view(peer.log).items() if on} != expected:
        await peer.receive()


def shows_someone_offline(frame: Frame) -> bool:
    return frame["event"] == "presence" and any(
        not change["online"] for change in frame["data"]["changes"])


@attrs.define
class ManualClock:
    """A clock the test moves by hand: attendance times become exact."""

    now: datetime = datetime(2026, 3, 2, 9, 0, 0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@attrs.define
class Person:
    user: User
    token: str

    @property
    def id(self) -> int:
        return self.user.id


@attrs.frozen
class LiveClass:
    """A class with its live session open: `people` is the instructor, then the students."""

    teacher: Person
    students: tuple[Person, ...]
    classroom: Classroom
    room: Room

    @property
    def people(self) -> tuple[Person, ...]:
        return (self.teacher, *self.students)


@attrs.define
class ChatWorld:
    services: Services
    server: ChatServer
    port: int
    nursery: trio.Nursery
    stopped: trio.Event  # set when ChatServer.serve has returned

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    # -- people, classes, rooms ----------------------------------------------------------

    async def person(self, name: str) -> Person:
        """A signed-in user, made straight in storage (same rows sign-up writes)."""
        storage = self.services.storage
        now = self.services.clock()
        user = await storage.create_user(name, name.title(), _PASSWORD_HASH, now)
        token = secrets.token_urlsafe(32)
        await storage.create_auth_session(hash_token(token), user.id, now, now + SESSION_LIFETIME)
        return Person(user, token)

    async def signed_up(self, name: str) -> Person:
        """A user through the real sign-up path (argon2 and all)."""
        signed = await self.services.accounts.sign_up(name, name.title(), _PASSWORD)
        return Person(signed.user, signed.token)

    async def classroom(self, instructor: Person, *students: Person,
                        name: str = "Networks") -> Classroom:
        classroom = await self.services.classes.create(instructor.user, name)
        for student in students:
            await self.services.classes.join(student.user, classroom.join_code)
        return classroom

    async def live_room(self, instructor: Person, classroom: Classroom) -> Room:
        return await self.services.rooms.open(instructor.user, classroom.id, "live")

    async def live_class(self, teacher: str, *students: str) -> LiveClass:
        """People made in the order named, a class of them taught by the first, and its
        live room."""
        instructor = await self.person(teacher)
        members = tuple([await self.person(name) for name in students])
        classroom = await self.classroom(instructor, *members)
        room = await self.live_room(instructor, classroom)
        return LiveClass(instructor, members, classroom, room)

    async def room(self, room_id: int) -> Room:
        room = await self.services.storage.get_room(room_id)
        assert room is not None
        return room

    async def last_seq(self, room_id: int) -> int:
        return (await self.room(room_id)).last_seq

    # -- connections ---------------------------------------------------------------------

    def _headers(self, person: Person | None, auth: str, origin: str | None,
                 extra: dict[str, str]) -> list[tuple[bytes, bytes]]:
        headers: list[tuple[str, str]] = []
        if person is not None and auth == "bearer":
            headers.append(("Authorization", f"Bearer {person.token}"))
        elif person is not None and auth == "cookie":
            headers.append(("Cookie", f"theme=dark; {SESSION_COOKIE}={person.token}"))
        if origin is not None:
            headers.append(("Origin", origin))
        headers += list(extra.items())
        return [(k.encode(), v.encode()) for k, v in headers]

    @asynccontextmanager
    async def connect(self, person: Person | None, *, auth: str = "bearer",
                      origin: str | None = None, path: str = "/ws",
                      queue: int = 64, **headers: str) -> AsyncIterator[Peer]:
        """A trio-websocket client. `queue` is its receive queue (frames read off the socket
        ahead of get_message)."""
        url = f"ws://127.0.0.1:{self.port}{path}"
        async with open_websocket_url(
                url, extra_headers=self._headers(person, auth, origin, headers),
                message_queue_size=queue, max_message_size=8 * 1024 * 1024) as ws:
            try:
                yield Peer(ws, person)
            finally:
                stream: Any = ws
        # trio-websocket's client leaves its socket open when the server closed first
        # without waiting for the closing handshake (e.g. 1009): a ResourceWarning later.
        await stream._stream.aclose()

    @asynccontextmanager
    async def joined(self, room_id: int, *people: Person) -> AsyncIterator[list[Peer]]:
        """A connection for each person (one per tab: a person may come twice), all opened
        first, then each joins the room in turn."""
        async with AsyncExitStack() as stack:
            peers = [await stack.enter_async_context(self.connect(person))
                     for person in people]
            for peer in peers:
                await peer.join(room_id)
            yield peers

    @asynccontextmanager
    async def connect_stalled(self, person: Person, *, rcvbuf: int = 4096
                              ) -> AsyncIterator[Peer]:
        """A client on a socket with a tiny receive buffer whose owner does not read until it
        decides to: the server's writes to it back up after a few frames."""
        sock = trio.socket.socket()
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, rcvbuf)
        await sock.connect(("127.0.0.1", self.port))
        stream = trio.SocketStream(sock)
        async with trio.open_nursery() as nursery:
            ws = await wrap_client_stream(
                nursery, stream, "127.0.0.1", "/ws", message_queue_size=1,
                max_message_size=8 * 1024 * 1024,
                extra_headers=self._headers(person, "bearer", None, {}))
            peer = Peer(ws, person)
            peer.sock = sock
            try:
                yield peer
            finally:
                with trio.move_on_after(2):
                    await ws.aclose()
                await stream.aclose()
                nursery.cancel_scope.cancel()

    async def handshake_status(self, person: Person | None, *, auth: str = "bearer",
                               origin: str | None = None, path: str = "/ws",
                               source: str = "127.0.0.1") -> int:
        """101 when the server accepts the WebSocket, else the HTTP status it refused with;
        0 when nothing listens. `source`: the client's address (any 127.x is this host).
        (On our own stream: trio-websocket's client leaves a refused one's socket open.)"""
        try:
            stream = await tcp_from(source, self.port)
        except OSError:
            return 0
        status = 101
        try:
            async with trio.open_nursery() as nursery:
                ws = await wrap_client_stream(
                    nursery, stream, "127.0.0.1", path,
                    extra_headers=self._headers(person, auth, origin, {}))
                await ws.aclose()
                nursery.cancel_scope.cancel()
        except* ConnectionRejected as refused:
            exc = refused.exceptions[0]
            assert isinstance(exc, ConnectionRejected)
            status = exc.status_code
        finally:
            await stream.aclose()
        return status


async def tcp_from(source: str, port: int) -> trio.SocketStream:
    """A TCP connection to 127.0.0.1:`port` from `source` (any 127.x address is this host)."""
    sock = trio.socket.socket()
    try:
        await sock.bind((source, 0))
        await sock.connect(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return trio.SocketStream(sock)


class Peer:
    """A WebSocket client that speaks the envelope protocol. Every frame it receives is kept
    in `log`, in order."""

    def __init__(self, ws: WebSocketConnection, person: Person | None) -> None:
        self.ws = ws
        self.person = person
        self.log: list[Frame] = []
        self._ref = 0
        self.sock: trio.socket.SocketType | None = None  # connect_stalled's raw socket

    async def send(self, event: str, data: dict[str, Any] | None = None,
                   ref: int | None = None, *, id: str | None = None) -> int:
        """Send an event (with the client's own `id` if given); its ref."""
        if ref is None:
            self._ref += 1
            ref = self._ref
        frame: Frame = {"event": event, "data": data or {}, "ref": ref}
        if id is not None:
            frame["id"] = id
        await self.ws.send_message(json.dumps(frame))
        return ref

    async def send_raw(self, frame: str | bytes) -> None:
        await self.ws.send_message(frame)

    async def receive(self) -> Frame:
        frame = await self.ws.get_message()
        value: Frame = json.loads(frame)
        self.log.append(value)
        return value

    async def expect(self, event: str, *, skip: tuple[str, ...] = ("presence",)) -> Frame:
        """The next frame that is not in `skip`; it must be `event`."""
        while True:
            frame = await self.receive()
            if frame["event"] in skip and frame["event"] != event:
                continue
            assert frame["event"] == event, frame
            return frame

    async def wait_for(self, match: Callable[[Frame], bool]) -> Frame:
        """Read until a frame matches (the ones before stay in the log)."""
        while True:
            frame = await self.receive()
            if match(frame):
                return frame

    async def next(self, event: str) -> Frame:
        """Read until a frame of this event (the ones before stay in the log)."""
        return await self.wait_for(lambda f: f["event"] == event)

    async def have(self, match: Callable[[Frame], bool]) -> Frame:
        """The first frame in the log that matches, reading more until one does."""
        for frame in self.log:
            if match(frame):
                return frame
        return await self.wait_for(match)

    async def answer(self, ref: int) -> Frame:
        """Read until the frame that answers `ref` (ack, error or a named answer)."""
        return await self.wait_for(lambda f: f.get("ref") == ref)

    async def call(self, event: str, data: dict[str, Any] | None = None, *,
                   id: str | None = None) -> Frame:
        """Send and return the answer, whatever it is."""
        return await self.answer(await self.send(event, data, id=id))

    async def request(self, event: str, data: dict[str, Any] | None = None,
                      answer: str = "ack") -> Frame:
        """Send; the answer must be `answer` (not an error)."""
        frame = await self.call(event, data)
        assert frame["event"] == answer, frame
        return frame

    async def refused(self, event: str, data: dict[str, Any] | None = None) -> str:
        """Send; the answer must be an error: returns its code."""
        frame = await self.call(event, data)
        assert frame["event"] == "error", frame
        return str(frame["data"]["code"])

    async def sync(self) -> list[Frame]:
        """Round trip an event the server refuses without side effects: every frame queued
        for this client before it has then been read. Returns the frames read meanwhile."""
        start = len(self.log)
        frame = await self.call("harness/sync")
        assert frame["event"] == "error" and frame["data"]["code"] == "invalid", frame
        return self.log[start:-1]

    async def say(self, room_id: int, text: str, event: str = "message",
                  **extra: Any) -> int:
        """Send a message (accepted); its seq."""
        ack = await self.request(event, {"room_id": room_id, "text": text, **extra})
        seq: int = ack["data"]["seq"]
        return seq

    async def join(self, room_id: int, after: int | None = None,
                   event: str = "room/join") -> Frame:
        data: dict[str, Any] = {"room_id": room_id}
        if after is not None:
            data["after"] = after
        return await self.request(event, data, answer="room/join")

    async def closed(self) -> int | None:
        """Read (into the log) until the server closes; the close code."""
        try:
            while True:
                await self.receive()
        except ConnectionClosed as exc:
            return None if exc.reason is None else int(exc.reason.code)

    def seen(self, event: str) -> list[Frame]:
        return [f for f in self.log if f["event"] == event]

    def texts(self) -> list[str]:
        return [f["data"]["text"] for f in self.log if "text" in f.get("data", {})]


@asynccontextmanager
async def chat_world(db_url: str, *, clock: Clock | None = None, bus_url: str | None = None,
                     **server_options: Any) -> AsyncIterator[ChatWorld]:
    """`server_options` go to ChatServer (outbox_frames=, outbox_bytes=, ping_interval=,
    ping_timeout=, ...). `bus_url`: a Redis bus (redis://...) this server subscribes to."""
    async with open_storage(db_url) as storage:
        await storage.init_schema()
        bus = None if bus_url is None else RedisBus(bus_url, name=secrets.token_hex(4))
        services = Services.build(storage, bus=bus, **({} if clock is None
                                                        else {"clock": clock}))
        server = ChatServer(services, bus=bus, **server_options)
        stopped = trio.Event()

        async def serve(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
            await server.serve("127.0.0.1", 0, task_status=task_status)
            stopped.set()

        async with trio.open_nursery() as nursery:
            if bus is not None:
                await nursery.start(bus.run)
            port = await nursery.start(serve)
            server.allowed_origins.add(ORIGIN)
            yield ChatWorld(services, server, port, nursery, stopped)
            server.begin_shutdown()
            if bus is not None:
                await stopped.wait()
                nursery.cancel_scope.cancel()


@asynccontextmanager
async def chat_servers(db_url: str, count: int = 2, *, clock: Clock | None = None,
                       **server_options: Any) -> AsyncIterator[list[ChatWorld]]:
    """`count` chat servers on one database, each its own ChatWorld (its own Services and
    storage pool); people and classes made through any of them are seen by all. Each
    server's name is its own address, as in production."""
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(chat_world(db_url, clock=clock,
                                                          **server_options))
               for _ in range(count)]
