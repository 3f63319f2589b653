"""Two real `classroom serve` processes on one MariaDB database and a redis-server of the
test's own: server a serves HTTP and chat, server b chat only (as a second chat host behind a
load balancer). The instructor is on a, the students on b; what one does reaches the other
over the bus: messages in seq order, presence, a kick (refused on b from the next event on),
a closed room, and a sign-out through the JSON API (its socket on b is closed at once).

tests/chat/test_bus.py covers the same with ChatServers in one process; this is the check
that the `--bus`/`--server-name` flags and the processes' own start-up wire it the same way."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from chat.sessions import CLOSE_SIGNED_OUT
from classroom.bus import UP
from tests.chat.harness import Peer
from tests.conftest import throwaway_mysql_url
from tests.e2e.server_process import ServerProcess, running_server
from tests.redis_server import own_redis

pytestmark = pytest.mark.mysql

PASSWORD = "two servers, one class"
_METRICS_LINE = re.compile(r"classroom: metrics on (http://\S+)/metrics$")


@attrs.frozen
class Site:
    api_url: str  # server a's JSON API
    health_urls: tuple[str, str]  # each server's /healthz
    chat_a: str
    chat_b: str


@asynccontextmanager
async def two_servers(tmp_path: Path) -> AsyncIterator[Site]:
    async with AsyncExitStack() as stack:
        redis = await stack.enter_async_context(own_redis(tmp_path))
        db_url = await stack.enter_async_context(throwaway_mysql_url())
        bus = ("--bus", redis.url("classroom-two-processes"), "--metrics", "127.0.0.1:0")
        # a first: it creates the schema b then finds ready.
        a = await stack.enter_async_context(running_server(db_url, (
            "--http", "127.0.0.1:0", "--chat", "127.0.0.1:0", "--server-name", "a", *bus)))
        b = await stack.enter_async_context(running_server(db_url, (
            "--no-http", "--chat", "127.0.0.1:0", "--server-name", "b", *bus)))
        assert a.http_url is not None and a.chat_url and b.chat_url
        health = (await _health_url(a), await _health_url(b))
        async with httpx.AsyncClient(timeout=10) as client:
            for url in health:
                while True:
                    if (await client.get(url)).json()["bus"] == UP:
                        break
                    await trio.sleep(0.05)
        yield Site(a.http_url + "/api/v1", health, a.chat_url, b.chat_url)


async def _health_url(server: ServerProcess) -> str:
    # Printed just after the chat line `running_server` waits for.
    while True:
        for line in server.lines:
            if found := _METRICS_LINE.search(line):
                return found.group(1) + "/healthz"
        await trio.sleep(0.02)


async def sign_up(site: Site, name: str) -> str:
    async with httpx.AsyncClient(base_url=site.api_url, timeout=10) as api:
        answer = await api.post("/signup", json={
            "username": name, "display_name": name.title(), "password": PASSWORD})
        assert answer.status_code == 201, answer.text
        token: str = answer.json()["token"]
        return token


def api(site: Site, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=site.api_url, timeout=10,
                             headers={"Authorization": f"Bearer {token}"})


async def live_class(site: Site, teacher: str, *students: str
                     ) -> tuple[int, list[tuple[int, str]]]:
    """A class taught by `teacher` with its live session open: the room's id and the
    (user id, token) of the teacher, then of each student."""
    people = []
    for name in (teacher, *students):
        token = await sign_up(site, name)
        async with api(site, token) as me:
            people.append(((await me.get("/me")).json()["user"]["id"], token))
    async with api(site, people[0][1]) as instructor:
        made = await instructor.post("/classrooms", json={"name": "Networks"})
        assert made.status_code == 201, made.text
        classroom = made.json()["classroom"]
        for _, token in people[1:]:
            async with api(site, token) as student:
                joined = await student.post("/classrooms/join",
                                            json={"code": classroom["join_code"]})
                assert joined.status_code == 200, joined.text
        room = await instructor.post(f"/classrooms/{classroom['id']}/sessions", json={})
        assert room.status_code == 201, room.text
    return int(room.json()["room"]["id"]), people


@asynccontextmanager
async def peer(chat_url: str, token: str) -> AsyncIterator[Peer]:
    headers = [(b"Authorization", f"Bearer {token}".encode())]
    async with open_websocket_url(chat_url, extra_headers=headers) as ws:
        try:
            yield Peer(ws, None)
        finally:
            stream: Any = ws
    # trio-websocket's client keeps a socket the server closed first.
    await stream._stream.aclose()


async def until_presence(p: Peer, user_id: int, online: bool) -> None:
    await p.have(lambda f: f["event"] == "presence" and [
        c["online"] for c in f["data"]["changes"] if c["user_id"] == user_id] == [online])


async def test_message_presence_and_kick_cross_two_processes(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with two_servers(tmp_path) as site:
            rid, [(_, teacher), (ann_id, ann)] = await live_class(site, "teacher", "ann")
            async with peer(site.chat_a, teacher) as t, peer(site.chat_b, ann) as a:
                await t.join(rid)
                await a.join(rid)
                # ann joined after the teacher, on the other process: only the bus tells a.
                await until_presence(t, ann_id, True)
                seqs = []
                for i in range(3):
                    seqs.append(await t.say(rid, f"t{i}"))
                    seqs.append(await a.say(rid, f"a{i}"))
                assert seqs == sorted(seqs)
                for p in (t, a):
                    await p.have(lambda f: f.get("seq") == seqs[-1])
                    assert [f["seq"] for f in p.seen("message")] == seqs
                    assert p.texts() == [f"{w}{i}" for i in range(3) for w in "ta"]

                await t.request("room/kill", {"room_id": rid, "user_id": ann_id})
                assert (await a.next("room/kill"))["data"]["user_id"] == ann_id
                await until_presence(t, ann_id, False)
                assert await a.refused("message", {"room_id": rid, "text": "still?"}) in {
                    "forbidden", "not_found"}
                assert await a.refused("room/join", {"room_id": rid}) == "forbidden"
                after = await t.say(rid, "after the kick")
                await a.sync()
                assert after not in [f.get("seq") for f in a.log]


async def test_close_and_logout_cross_two_processes(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with two_servers(tmp_path) as site:
            rid, [(_, teacher), (_, ann)] = await live_class(site, "teacher", "ann")
            async with peer(site.chat_a, teacher) as t, peer(site.chat_b, ann) as a:
                await t.join(rid)
                await a.join(rid)
                await t.request("room/close", {"room_id": rid})
                closed = await a.next("room/closed")
                # The same stored event, at the same seq, on both servers.
                here = await t.have(lambda f: f["event"] == "room/closed")
                assert closed["seq"] == here["seq"] and closed["seq"] is not None
                assert await a.refused("message", {"room_id": rid, "text": "late"}) in {
                    "not_found", "invalid"}
                # Signing out on a (the app server) ends ann's socket on b at once.
                async with api(site, ann) as me:
                    assert (await me.post("/logout", json={})).status_code == 204
                assert await a.closed() == CLOSE_SIGNED_OUT
