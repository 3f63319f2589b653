"""Chat servers that behave as one over the bus (a redis-server of the test's own): stored
events, presence, kicks, closes and sign-outs cross servers at once; a bus restart loses
nothing; while the bus is down servers read the database (and say so); nothing polls while
the bus is up. Each server here is a ChatServer with its own Services, storage pool and bus
connection, as separate hosts would be."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from chat.sessions import CLOSE_SIGNED_OUT
from classroom.bus import DOWN, UP
from storage.stats import observe_statements
from tests.chat.harness import ChatWorld, Peer, chat_servers, presence_changes, shows_presence
from tests.chat.harness import until_online as until_shown
from tests.redis_server import OwnRedis, own_redis

# Long: what reaches the other server within a test's few seconds came over the bus (or,
# where a test shortens it, from the fallback's reads).
NO_POLLING = 600.0


@asynccontextmanager
async def bus_servers(db_url: str, tmp_path: Path, *, relay_interval: float = NO_POLLING,
                      **options: Any) -> AsyncIterator[tuple[OwnRedis, ChatWorld, ChatWorld]]:
    async with own_redis(tmp_path) as redis, chat_servers(
            db_url, 2, bus_url=redis.url("classroom-test"), relay_interval=relay_interval,
            session_interval=NO_POLLING, **options) as (one, two):
        await until_bus(one, UP)
        await until_bus(two, UP)
        yield redis, one, two


async def until_bus(world: ChatWorld, state: str) -> None:
    while True:
        if world.services.bus.state == state:
            return
        await trio.sleep(0.02)


def presence(peer: Peer, user_id: int) -> list[bool]:
    return presence_changes(peer.log, user_id)


async def until_presence(peer: Peer, user_id: int, online: bool) -> None:
    await peer.wait_for(shows_presence(user_id, online))


async def until_online(peer: Peer, user_id: int) -> None:
    """Shown online: in the join answer's members already, or by a presence event after."""
    answer = peer.seen("room/join")[-1]["data"]
    if not any(m["id"] == user_id and m["online"] for m in answer["members"]):
        await until_presence(peer, user_id, True)


async def test_message_and_presence_cross_servers_in_seq_order(db_url: str,
                                                               tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with bus_servers(db_url, tmp_path) as (_, one, two):
            lesson = await one.live_class("teacher", "ann", "bob")
            teacher, ann, bob = lesson.people
            rid = lesson.room.id
            async with one.joined(rid, teacher) as (t,), two.joined(rid, ann) as (a,):
                await until_presence(t, ann.id, True)  # ann is on the other server
                await until_online(a, teacher.id)  # from the answer to `who`
                seqs = []
                for i in range(5):
                    seqs.append(await t.say(rid, f"t{i}"))
                    seqs.append(await a.say(rid, f"a{i}"))
                for peer in (t, a):
                    await peer.have(lambda f: f.get("seq") == seqs[-1])
                    assert [f["seq"] for f in peer.seen("message")] == seqs
                    assert peer.texts() == [f"{w}{i}" for i in range(5) for w in "ta"]
                # A student's private question reaches the instructor on the other server
                # only.
                private = await a.say(rid, "help?", event="message/to_mentor")
                await t.have(lambda f: f.get("seq") == private)
                async with two.joined(rid, bob) as (b,):
                    await until_presence(t, bob.id, True)
                    await b.say(rid, "bob here")
                    await b.sync()
                    assert private not in [f.get("seq") for f in b.log]
                await until_presence(t, bob.id, False)
                # A user online on both servers stays online while one connection remains.
                async with one.joined(rid, ann) as (a_here,):
                    await a_here.sync()
                await t.sync()
                assert presence(t, ann.id) == [True]
            # ann's last connection (on the other server) left.
            async with one.joined(rid, teacher) as (t_again,):
                online = {m["id"] for m in t_again.log[0]["data"]["members"] if m["online"]}
                assert ann.id not in online


async def test_kicked_student_is_refused_on_the_other_server(db_url: str,
                                                             tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with bus_servers(db_url, tmp_path) as (_, one, two):
            lesson = await one.live_class("teacher", "ann")
            teacher, ann = lesson.people
            rid = lesson.room.id
            async with one.joined(rid, teacher) as (t,), two.joined(rid, ann) as (a,):
                await until_presence(t, ann.id, True)
                await t.request("room/kill", {"room_id": rid, "user_id": ann.id})
                kill = await a.next("room/kill")
                assert kill["data"]["user_id"] == ann.id
                await until_presence(t, ann.id, False)
                assert await a.refused("message", {"room_id": rid, "text": "still?"}) in {
                    "forbidden", "not_found"}
                assert await a.refused("room/join", {"room_id": rid}) == "forbidden"
                await t.say(rid, "after the kick")
                await t.sync()
            async with two.connect(ann) as again:
                assert await again.refused("room/rejoin", {"room_id": rid, "after": 0}) == (
                    "forbidden")


async def test_close_on_one_server_ends_the_room_on_the_other(db_url: str,
                                                              tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with bus_servers(db_url, tmp_path) as (_, one, two):
            lesson = await one.live_class("teacher", "ann")
            teacher, ann = lesson.people
            rid = lesson.room.id
            async with one.joined(rid, teacher) as (t,), two.joined(rid, ann) as (a,):
                await t.request("room/close", {"room_id": rid})
                closed = await a.next("room/closed")
                assert closed["seq"] == await one.last_seq(rid)
                assert await a.refused("message", {"room_id": rid, "text": "late"}) in {
                    "not_found", "invalid"}
                assert two.server.rooms_hosted() == 0


async def test_a_room_ended_from_the_web_ends_on_every_chat_server(db_url: str,
                                                                   tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with bus_servers(db_url, tmp_path) as (_, one, two):
            lesson = await one.live_class("teacher", "ann")
            teacher, ann = lesson.people
            rid = lesson.room.id
            async with two.joined(rid, ann) as (a,):
                # The instructor's End button: the domain call an app server makes.
                await one.services.rooms.end(teacher.user, rid)
                await a.next("room/closed")


async def test_new_room_reaches_members_on_the_other_server(db_url: str,
                                                            tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with bus_servers(db_url, tmp_path) as (_, one, two):
            teacher = await one.person("teacher")
            ann = await one.person("ann")
            classroom = await one.classroom(teacher, ann)
            async with one.connect(teacher) as t, two.connect(ann) as a:
                await t.sync()
                await a.sync()
                update = await t.request("room/create", {
                    "classroom_id": classroom.id, "kind": "discussion", "topic": "Routing"},
                    answer="room/update")
                seen = await a.next("room/update")
                assert seen["data"]["room"]["id"] == update["data"]["room"]["id"]


async def test_logout_closes_connections_on_the_other_server_at_once(db_url: str,
                                                                     tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with bus_servers(db_url, tmp_path) as (_, one, two):
            lesson = await one.live_class("teacher", "ann")
            _, ann = lesson.people
            async with two.joined(lesson.room.id, ann) as (a,):
                # The other server checks sign-ins every NO_POLLING seconds: only the bus
                # can tell it in time.
                await one.services.accounts.log_out(ann.token)
                assert await a.closed() == CLOSE_SIGNED_OUT


async def test_bus_restart_loses_nothing(db_url: str, tmp_path: Path) -> None:
    with trio.fail_after(40):
        async with bus_servers(db_url, tmp_path) as (redis, one, two):
            lesson = await one.live_class("teacher", "ann")
            teacher, ann = lesson.people
            rid = lesson.room.id
            async with one.joined(rid, teacher) as (t,), two.joined(rid, ann) as (a,):
                before = await t.say(rid, "before")
                await a.have(lambda f: f.get("seq") == before)
                await redis.stop()
                await until_bus(two, DOWN)
                during = [await t.say(rid, f"during {i}") for i in range(3)]
                await redis.start()
                await until_bus(one, UP)
                await until_bus(two, UP)
                after = await t.say(rid, "after")
                await a.have(lambda f: f.get("seq") == after)
                got = [f["seq"] for f in a.seen("message")]
                assert got == [before, *during, after]


async def test_bus_down_falls_back_to_the_database(db_url: str, tmp_path: Path) -> None:
    with trio.fail_after(40):
        async with bus_servers(db_url, tmp_path, relay_interval=0.2) as (redis, one, two):
            lesson = await one.live_class("teacher", "ann", "bob")
            teacher, ann, bob = lesson.people
            rid = lesson.room.id
            async with one.joined(rid, teacher) as (t,), two.joined(rid, ann, bob) as (a, b):
                await redis.stop()
                await until_bus(one, DOWN)
                await until_bus(two, DOWN)
                seqs = [await t.say(rid, f"down {i}") for i in range(3)]
                seqs.append(await a.say(rid, "from two"))
                for peer in (t, a):
                    await peer.have(lambda f: f.get("seq") == seqs[-1])
                    assert [f["seq"] for f in peer.seen("message")] == seqs
                # A kick made on the first server is checked on the second's next event.
                await t.request("room/kill", {"room_id": rid, "user_id": bob.id})
                assert await b.refused("message", {"room_id": rid, "text": "x"}) == "forbidden"
                await redis.start()
                await until_bus(one, UP)
                await until_bus(two, UP)
                last = await t.say(rid, "bus back")
                await a.have(lambda f: f.get("seq") == last)


@pytest.mark.parametrize("with_bus", [True, False])
async def test_idle_rooms_cost_the_database_nothing_with_the_bus(
        db_url: str, tmp_path: Path, with_bus: bool) -> None:
    statements = 0

    def count(_: float) -> None:
        nonlocal statements
        statements += 1

    stop_counting = observe_statements(count)
    with trio.fail_after(60):
        async with own_redis(tmp_path) as redis, chat_servers(
                db_url, 2, bus_url=redis.url("idle") if with_bus else None,
                relay_interval=0.1, session_interval=NO_POLLING) as (one, two):
            if with_bus:
                await until_bus(one, UP)
                await until_bus(two, UP)
            teacher = await one.person("teacher")
            rooms = []
            for i in range(5):
                classroom = await one.classroom(teacher, name=f"class {i}")
                rooms.append((await one.live_room(teacher, classroom)).id)
            async with one.connect(teacher) as t, two.connect(teacher) as t2:
                for rid in rooms:
                    await t.join(rid)
                    await t2.join(rid)
                await trio.sleep(0.3)
                statements = 0
                await trio.sleep(1.0)
                idle = statements
    stop_counting()
    if with_bus:
        assert idle == 0
    else:
        assert idle >= 20  # 5 rooms x 2 servers, every 0.1 s: the polling the bus removes


async def test_a_join_storm_on_one_server_reaches_the_other_in_few_batches(
        db_url: str, tmp_path: Path) -> None:
    """Presence crosses the bus one user at a time, and each server's members still get
    one batch per interval: every view adds up, each change shown once."""
    interval = 1.0
    with trio.fail_after(60):
        async with bus_servers(db_url, tmp_path, presence_interval=interval) as (_, one, two):
            lesson = await one.live_class("teacher", *[f"s{i}" for i in range(16)])
            rid = lesson.room.id
            everyone = {p.id for p in lesson.people}
            async with one.joined(rid, lesson.teacher) as (t,), AsyncExitStack() as stack:
                peers = [await stack.enter_async_context(two.connect(p))
                         for p in lesson.students]
                began = trio.current_time()
                async with trio.open_nursery() as nursery:
                    for peer in peers:
                        nursery.start_soon(peer.join, rid)
                await until_shown(t, everyone)
                took = trio.current_time() - began
                batches = len(t.seen("presence"))
                assert batches <= math.ceil(took / interval) + 1, (batches, took)
                assert batches < len(peers)
                for peer in peers:  # the instructor is on the other server
                    await until_shown(peer, everyone)
            async with two.joined(rid, lesson.students[0]) as (s,):
                await until_shown(s, {lesson.students[0].id})
