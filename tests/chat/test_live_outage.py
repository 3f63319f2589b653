"""A database outage seen from a live room: the chat server's MariaDB is reached through a
TCP proxy and cutting the proxy is the outage. Events that would be stored are refused with an
`unavailable` error to their sender (with its ref), connections stay open, and once the network
is back the room carries on by itself with contiguous seqs: nothing of the outage was stored."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from storage.mysql import CONNECT_TIMEOUT, MySQLParams
from tests.chat.harness import ChatWorld, Frame, Peer, chat_world, shows_presence
from tests.conftest import throwaway_mysql_url
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.mysql

# The proxy refuses at once: a refusal that took the database's connect timeout waited for it
# (not a tighter figure: the machine may be loaded).
QUICK = CONNECT_TIMEOUT


@asynccontextmanager
async def world_behind_proxy() -> AsyncIterator[tuple[ChatWorld, TcpProxy]]:
    async with throwaway_mysql_url() as url:
        p = MySQLParams.from_url(url)
        async with TcpProxy(p.host, p.port) as proxy, chat_world(proxy.via(url)) as world:
            yield world, proxy


def messages(peer: Peer) -> list[Frame]:
    return [f for f in peer.log if f["event"] == "message"]


async def refused_quickly(peer: Peer, event: str, data: dict[str, object]) -> Frame:
    began = trio.current_time()
    ref = await peer.send(event, data)
    answer = await peer.answer(ref)
    took = trio.current_time() - began
    assert answer["event"] == "error", answer
    assert answer["ref"] == ref
    assert answer["data"]["code"] == "unavailable", answer
    assert "stored" in answer["data"]["message"] or "database" in answer["data"]["message"]
    assert took < QUICK, f"{event} was refused after {took:.2f} s"
    return answer


async def test_outage_refuses_events_keeps_connections_and_recovers() -> None:
    with trio.fail_after(15):
        async with world_behind_proxy() as (world, proxy):
            lesson = await world.live_class("teacher", "ann", "bob")
            teacher, ann, bob = lesson.people
            rid = lesson.room.id
            async with world.connect(teacher) as t, world.connect(ann) as a, \
                    world.connect(bob) as b:
                peers = [t, a, b]
                for peer in peers:
                    await peer.join(rid)
                    await peer.sync()  # the join is handled in full (attendance written)
                await t.request("message", {"room_id": rid, "text": "before"})
                for peer in peers:
                    await peer.have(lambda f: f["data"].get("text") == "before")
                first = await world.last_seq(rid)

                assert proxy.open_links > 0  # the database is reached through the proxy
                proxy.cut()
                await refused_quickly(a, "message", {"room_id": rid, "text": "lost 1"})
                await refused_quickly(a, "message", {"room_id": rid, "text": "lost 2"})
                await refused_quickly(t, "message", {"room_id": rid, "text": "lost 3"})
                await refused_quickly(b, "message/to_mentor", {"room_id": rid, "text": "lost 4"})
                # Nobody was told about an event that was not stored, and every connection
                # is still open and answering.
                for peer in peers:
                    await peer.sync()
                    assert not [f for f in messages(peer) if f["data"]["text"].startswith("lost")]
                # A new connection cannot be authenticated meanwhile: 503, not a crash.
                assert await world.handshake_status(bob) == 503
                assert world.server.clients == 3

                proxy.restore()
                await a.request("message", {"room_id": rid, "text": "after"})
                for peer in peers:
                    got = await peer.have(lambda f: f["data"].get("text") == "after")
                    assert got["seq"] == first + 1, got  # no seq spent on the outage
                    seqs = [f["seq"] for f in messages(peer)]
                    assert seqs == sorted(seqs) and seqs[-2:] == [first, first + 1]
                stored = await world.services.rooms.stored_since(rid, 0)
                seqs = [e.seq for e in stored]
                assert seqs == list(range(1, first + 2))
                texts = [json.loads(e.data).get("text") for e in stored
                         if e.event.startswith("message")]
                assert texts == ["before", "after"]
                assert await world.handshake_status(bob) == 101
                # And the private path is back too.
                await b.request("message/to_mentor", {"room_id": rid, "text": "back"})
                await t.have(lambda f: f["data"].get("text") == "back")


async def test_a_departure_during_an_outage_is_recorded_when_the_database_is_back() -> None:
    with trio.fail_after(15):
        async with world_behind_proxy() as (world, proxy):
            lesson = await world.live_class("teacher", "ann")
            teacher, ann = lesson.people
            room = lesson.room
            async with world.connect(teacher) as t:
                await t.join(room.id)
                async with world.connect(ann) as a:
                    await a.join(room.id)
                    await a.sync()  # the join is handled in full (attendance written)
                    # (Seen arriving first: a quick arrival and departure may cancel out.)
                    await t.have(shows_presence(ann.id, True))
                    proxy.cut()
                left_at = world.services.clock()
                await t.have(shows_presence(ann.id, False))
                proxy.restore()
                # The chat server writes it on its next look at the database (every 2 s).
                while True:
                    _, records = await world.services.rooms.attendance(teacher.user, room.id)
                    mine = {r.user.id: r for r in records}[ann.id]
                    if mine.open_connections == 0:
                        break
                    await trio.sleep(0.2)
                assert mine.last_leave is not None
                assert abs((mine.last_leave - left_at).total_seconds()) < 1.0
