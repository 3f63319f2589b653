"""The real site under the real HTTP server, in-process, and a browser-like httpx client.

`running_site(db_url)` opens the database, creates the schema and serves `web.Site` with
`protocol.HTTPServer` on a free port of 127.0.0.1; with `chat=True` a real `ChatServer` runs
beside it (as `classroom serve` runs both), trusting the site's origin, and the site's pages
point at it. `Browser` keeps cookies like a browser and submits forms the way one would: with
the CSRF token the page's form carries.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx
import trio

from chat import ChatServer
from classroom import Services
from protocol import HTTPServer
from storage import Storage, open_storage
from web import Site

PASSWORD = "correct horse battery"
_CSRF_INPUT = re.compile(r'<input type="hidden" name="csrf" value="([^"]*)">')
_JOIN_CODE = re.compile(r'<p class="join-code">([^<]+)</p>')


@attrs.define
class WebWorld:
    base_url: str
    services: Services
    storage: Storage
    chat: LiveChat | None = None

    @property
    def chat_url(self) -> str | None:
        return None if self.chat is None else self.chat.url

    def browser(self) -> Browser:
        return Browser(httpx.AsyncClient(base_url=self.base_url, timeout=10))

    def api(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.base_url + "/api/v1", headers=headers,
                                 timeout=10)


class LiveChat:
    """The chat server beside the site; `restart()` stops it (clients get close 1001) and
    starts a fresh one on the same port, as a redeploy would."""

    def __init__(self, services: Services, nursery: trio.Nursery) -> None:
        self._services = services
        self._nursery = nursery
        self.port = 0
        self.origins: set[str] = set()
        self.server = ChatServer(services)
        self._stopped = trio.Event()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self) -> None:
        self.server = ChatServer(self._services)
        self.server.allowed_origins |= self.origins
        self._stopped = trio.Event()
        self.port = await self._nursery.start(self._serve, self.server, self._stopped)

    async def _serve(self, server: ChatServer, stopped: trio.Event,
                     task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await server.serve("127.0.0.1", self.port, task_status=task_status)
        finally:
            stopped.set()

    def trust(self, origin: str) -> None:
        self.origins.add(origin)
        self.server.allowed_origins.add(origin)

    async def restart(self) -> None:
        self.server.begin_shutdown()
        await self._stopped.wait()
        await self.start()


@asynccontextmanager
async def running_site(db_url: str, *, secure_cookies: bool = False, chat: bool = False
                       ) -> AsyncIterator[WebWorld]:
    async with open_storage(db_url) as storage:
        await storage.init_schema()
        services = Services.build(storage)
        async with trio.open_nursery() as nursery:
            # As `classroom serve` does: the per-process cache serves while this runs.
            await nursery.start(services.cache.follow)
            live_chat = None
            if chat:
                live_chat = LiveChat(services, nursery)
                await live_chat.start()
            site = Site(services, chat_url=live_chat.url if live_chat else None,
                        secure_cookies=secure_cookies)
            server = HTTPServer(site.handler, error_page=site.error_page)
            port = await nursery.start(server.serve, "127.0.0.1", 0)
            base_url = f"http://127.0.0.1:{port}"
            if live_chat is not None:
                live_chat.trust(base_url)
            try:
                yield WebWorld(base_url, services, storage, live_chat)
            finally:
                nursery.cancel_scope.cancel()


def form_csrf(html: str) -> str:
    """The CSRF token the page's forms carry (they all carry the same one)."""
    found = _CSRF_INPUT.search(html)
    assert found, "the page has no form with a CSRF field"
    return found.group(1)


def join_code(html: str) -> str:
    found = _JOIN_CODE.search(html)
    assert found, "the page shows no join code"
    return found.group(1)


@attrs.define
class Browser:
    """An httpx client used like a browser: cookies kept, redirects not followed (tests look
    at each 303), forms sent with the token from the page they are on."""

    client: httpx.AsyncClient

    async def __aenter__(self) -> Browser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.get(path, **kwargs)

    async def submit(self, form_page: str, action: str, fields: Mapping[str, str]
                     ) -> httpx.Response:
        """Open `form_page`, then post `fields` with its CSRF token to `action`."""
        page = await self.client.get(form_page)
        assert page.status_code == 200, (form_page, page.status_code)
        return await self.post(action, {"csrf": form_csrf(page.text), **fields})

    async def post(self, action: str, fields: Mapping[str, str]) -> httpx.Response:
        """Post exactly `fields` (no token added): for forging and replaying."""
        return await self.client.post(action, data=dict(fields))

    async def sign_up(self, username: str, display_name: str | None = None,
                      password: str = PASSWORD) -> httpx.Response:
        response = await self.submit("/signup", "/signup", {
            "username": username, "display_name": display_name or username.title(),
            "password": password, "confirm": password})
        assert response.status_code == 303, response.text
        return response

    async def log_in(self, username: str, password: str = PASSWORD) -> httpx.Response:
        return await self.submit("/login", "/login",
                                 {"username": username, "password": password})

    async def create_class(self, name: str, description: str = "") -> int:
        response = await self.submit("/classrooms/new", "/classrooms/new",
                                     {"name": name, "description": description})
        assert response.status_code == 303, response.text
        location = response.headers["location"]
        assert re.fullmatch(r"/classrooms/\d+", location), location
        return int(location.rsplit("/", 1)[1])

    async def post_update(self, classroom_id: int, title: str, body: str = "",
                          tags: str = "") -> httpx.Response:
        page = f"/classrooms/{classroom_id}"
        return await self.submit(page, page, {"title": title, "body": body, "tags": tags})

    async def join(self, code: str) -> httpx.Response:
        return await self.submit("/classrooms/join", "/classrooms/join", {"code": code})
