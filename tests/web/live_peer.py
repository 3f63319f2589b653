"""A WebSocket client that connects to the chat server the way a signed-in page does: with
the session cookie and the site's Origin. Tests use it to make real live traffic (joins,
messages, closing a room) and then look at what the pages and the API show of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio
from trio_websocket import open_websocket_url

from classroom.accounts import SESSION_COOKIE
from tests.chat.harness import Peer
from tests.web.harness import PASSWORD, WebWorld


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


@asynccontextmanager
async def live_peer(world: WebWorld, token: str) -> AsyncIterator[Peer]:
    assert world.chat_url is not None, "start the site with chat=True"
    headers = [(b"Cookie", f"{SESSION_COOKIE}={token}".encode()),
               (b"Origin", world.base_url.encode())]
    async with open_websocket_url(world.chat_url, extra_headers=headers) as ws:
        try:
            yield Peer(ws, None)
        finally:
            stream: Any = ws
    # As in the chat harness: a connection the server closed first keeps its socket open.
    await stream._stream.aclose()
