"""A real chat server (and its database) in-process, and real WebSocket clients for it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from chat import ChatServer
from classroom import Services
from storage import Classroom, User, open_storage


@attrs.define
class Person:
    user: User
    token: str


@attrs.define
class ChatWorld:
    services: Services
    server: ChatServer
    port: int
    nursery: trio.Nursery

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def person(self, name: str) -> Person:
        signed = await self.services.accounts.sign_up(name, name.title(), "password123")
        return Person(signed.user, signed.token)

    async def classroom(self, instructor: Person, *students: Person) -> Classroom:
        classroom = await self.services.classes.create(instructor.user, "Networks")
        for student in students:
            await self.services.classes.join(student.user, classroom.join_code)
        return classroom

    @asynccontextmanager
    async def connect(self, person: Person, **headers: str) -> AsyncIterator[Peer]:
        extra = [("Authorization", f"Bearer {person.token}")]
        extra += [(k.replace("_", "-"), v) for k, v in headers.items()]
        async with open_websocket_url(self.url, extra_headers=[
                (k.encode(), v.encode()) for k, v in extra]) as ws:
            yield Peer(ws)


class Peer:
    """A WebSocket client that speaks the envelope protocol."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self._ref = 0

    async def send(self, event: str, data: dict[str, Any] | None = None,
                   ref: int | None = None) -> int:
        if ref is None:
            self._ref += 1
            ref = self._ref
        await self.ws.send_message(json.dumps({"event": event, "data": data or {},
                                               "ref": ref}))
        return ref

    async def receive(self) -> dict[str, Any]:
        frame = await self.ws.get_message()
        value: dict[str, Any] = json.loads(frame)
        return value

    async def expect(self, event: str, *, skip: tuple[str, ...] = ("presence",)
                     ) -> dict[str, Any]:
        """The next frame that is not in `skip`; it must be `event`."""
        while True:
            frame = await self.receive()
            if frame["event"] in skip and frame["event"] != event:
                continue
            assert frame["event"] == event, frame
            return frame

    async def request(self, event: str, data: dict[str, Any] | None = None,
                      answer: str = "ack") -> dict[str, Any]:
        """Send and wait for the answer carrying our ref (other frames are skipped)."""
        ref = await self.send(event, data)
        while True:
            frame = await self.receive()
            if frame.get("ref") == ref:
                assert frame["event"] == answer, frame
                return frame

    async def join(self, room_id: int, after: int | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"room_id": room_id}
        if after is not None:
            data["after"] = after
        return await self.request("room/join", data, answer="room/join")


@asynccontextmanager
async def chat_world(db_url: str) -> AsyncIterator[ChatWorld]:
    async with open_storage(db_url) as storage:
        await storage.init_schema()
        services = Services.build(storage)
        server = ChatServer(services)
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve, "127.0.0.1", 0)
            server.allowed_origins.add("http://site.example")
            yield ChatWorld(services, server, port, nursery)
            server.begin_shutdown()
