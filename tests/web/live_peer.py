"""A WebSocket client that connects to the chat server the way a signed-in page does: with
the session cookie and the site's Origin. Tests use it to make real live traffic (joins,
messages, closing a room) and then look at what the pages and the API show of it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from tests.web.harness import PASSWORD, WebWorld

Frame = dict[str, Any]


async def api_user(world: WebWorld, username: str, display_name: str | None = None) -> str:
    """Sign up through the API; the session token."""
    async with world.api() as api:
        answer = await api.post("/signup", json={
            "username": username, "display_name": display_name or username.title(),
            "password": PASSWORD})
        assert answer.status_code == 201, answer.text
        token: str = answer.json()["token"]
        return token


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Until `check()` holds: for what the server records just after a connection closes."""
    while True:
        if await check():
            return
        await trio.sleep(0.02)


class LivePeer:
    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.log: list[Frame] = []
        self._ref = 0

    async def send(self, event: str, data: dict[str, Any]) -> int:
        self._ref += 1
        await self.ws.send_message(json.dumps({"event": event, "data": data, "ref": self._ref}))
        return self._ref

    async def receive(self) -> Frame:
        frame: Frame = json.loads(await self.ws.get_message())
        self.log.append(frame)
        return frame

    async def wait_for(self, match: Callable[[Frame], bool]) -> Frame:
        while True:
            frame = await self.receive()
            if match(frame):
                return frame

    async def call(self, event: str, data: dict[str, Any], answer: str = "ack") -> Frame:
        """Send and wait for the answer to it, which must be `answer`."""
        ref = await self.send(event, data)
        frame = await self.wait_for(lambda f: f.get("ref") == ref)
        assert frame["event"] == answer, frame
        return frame

    async def join(self, room_id: int) -> Frame:
        return await self.call("room/join", {"room_id": room_id}, answer="room/join")

    async def say(self, room_id: int, text: str, event: str = "message", **extra: Any) -> int:
        """Send a message; its seq."""
        ack = await self.call(event, {"room_id": room_id, "text": text, **extra})
        seq: int = ack["data"]["seq"]
        return seq


@asynccontextmanager
async def live_peer(world: WebWorld, token: str) -> AsyncIterator[LivePeer]:
    assert world.chat_url is not None, "start the site with chat=True"
    headers = [(b"Cookie", f"classroom_session={token}".encode()),
               (b"Origin", world.base_url.encode())]
    async with open_websocket_url(world.chat_url, extra_headers=headers) as ws:
        yield LivePeer(ws)
