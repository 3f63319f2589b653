"""Presence is coalesced: a join storm gives each member a few `presence` batches (one per
room per interval), not one frame per join, and every member's view (its join answer's
snapshot, then the batches after it) adds up to who is online, each change shown once."""

from __future__ import annotations

import json
import math
from contextlib import AsyncExitStack

import trio

from chat.presence import (
    PRESENCE_FRAMES_PER_SECOND,
    Change,
    RoomPresence,
    batch_frame,
    room_interval,
)
from tests.chat.harness import ChatWorld, Frame, Peer, Person, chat_world, until_online

STUDENTS = 24
# Long enough that a storm of joins spans few intervals even on a loaded machine.
INTERVAL = 1.0


async def storm(world: ChatWorld, room_id: int, people: list[Person],
                stack: AsyncExitStack) -> list[Peer]:
    """Everyone connects, then all join at once."""
    peers = [await stack.enter_async_context(world.connect(p)) for p in people]
    async with trio.open_nursery() as nursery:
        for peer in peers:
            nursery.start_soon(peer.join, room_id)
    return peers


async def test_a_join_storm_gives_each_member_a_few_batches_that_add_up(db_url: str) -> None:
    with trio.fail_after(60):
        async with chat_world(db_url, presence_interval=INTERVAL) as world:
            lesson = await world.live_class("teacher", *[f"s{i}" for i in range(STUDENTS)])
            rid = lesson.room.id
            everyone = {p.id for p in lesson.people}
            async with world.connect(lesson.teacher) as t, AsyncExitStack() as stack:
                await t.join(rid)
                began = trio.current_time()
                peers = await storm(world, rid, list(lesson.students), stack)
                await until_online(t, everyone)
                took = trio.current_time() - began
                # One batch per interval (the first may go at once), not one per join.
                batches = len(t.seen("presence"))
                assert batches <= math.ceil(took / INTERVAL) + 1, (batches, took)
                assert batches < STUDENTS
                # The instructor's batches list display names, never a username.
                assert not any("username" in c for f in t.seen("presence")
                               for c in f["data"]["changes"])
                for peer in peers:
                    await until_online(peer, everyone)
                    assert len(peer.seen("presence")) <= batches + 1
                # Half leave at once: again a few batches, and every view agrees.
                leaving = len(peers) // 2
                before = batches
                began = trio.current_time()
                for peer in peers[:leaving]:
                    await peer.ws.aclose()
                stayed = everyone - {p.id for p in lesson.students[:leaving]}
                await until_online(t, stayed)
                took = trio.current_time() - began
                assert len(t.seen("presence")) - before <= math.ceil(took / INTERVAL) + 1
                for peer in peers[leaving:]:
                    await until_online(peer, stayed)


async def test_a_member_joining_mid_interval_gets_only_what_follows_its_snapshot(
        db_url: str) -> None:
    with trio.fail_after(30):
        async with chat_world(db_url, presence_interval=INTERVAL) as world:
            lesson = await world.live_class("teacher", "ann", "bob", "carl")
            teacher, ann, bob, carl = lesson.people
            rid = lesson.room.id
            async with world.joined(rid, teacher) as (t,):
                # Each joins while the others' arrivals may still wait for their batch.
                async with world.joined(rid, ann, bob, carl) as (a, b, c):
                    for peer in (t, a, b, c):
                        await until_online(peer, {teacher.id, ann.id, bob.id, carl.id})
                        # The joiner's own arrival is in its snapshot, never in a batch.
                        me = peer.person
                        assert me is not None
                        assert not [f for f in peer.seen("presence")
                                    if any(ch["user_id"] == me.id
                                           for ch in f["data"]["changes"])]
                await until_online(t, {teacher.id})


def changes(*pairs: tuple[int, bool]) -> list[Change]:
    return [Change(seq, uid, f"U{uid}", online)
            for seq, (uid, online) in enumerate(pairs, start=1)]


def listed(frame: bytes | None) -> list[tuple[int, bool]]:
    assert frame is not None
    body: Frame = json.loads(frame[frame.index(b"{"):])  # after the WebSocket header
    return [(c["user_id"], c["online"]) for c in body["data"]["changes"]]


def test_a_join_and_leave_within_one_batch_cancel_out() -> None:
    assert batch_frame(1, changes((2, True), (2, False)), 0) is None
    assert listed(batch_frame(1, changes((2, True), (3, True), (2, False), (2, True)), 2)) == [
        (3, True), (2, True)]
    assert listed(batch_frame(1, changes((2, False), (3, True), (2, True), (2, False)), 1)) == [
        (3, True), (2, False)]


def test_presence_records_only_changes() -> None:
    presence = RoomPresence()
    assert presence.record(2, "Ann", online=True)
    assert not presence.record(2, "Ann", online=True)  # a second tab
    assert presence.record(2, "", online=False)
    assert not presence.record(2, "", online=False)
    assert [(c.seq, c.name, c.online) for c in presence.take()] == [
        (1, "Ann", True), (2, "Ann", False)]
    assert presence.take() == []


def test_a_big_room_gets_fewer_batches() -> None:
    """Up to the budget a room gets the base interval; past it the interval grows with its
    members, so a lecture's batches cost about the same sends a second as a class's."""
    assert room_interval(0.2, 10) == 0.2
    assert room_interval(0.2, PRESENCE_FRAMES_PER_SECOND // 5) == 0.2
    assert room_interval(0.2, 5 * PRESENCE_FRAMES_PER_SECOND) == 5.0
