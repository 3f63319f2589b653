"""Attendance of a live session as the chat server records it: first join, last leave and
time connected, with a user's several tabs counted once."""

from __future__ import annotations

from datetime import datetime, timedelta

import trio

from storage import Attendance
from tests.chat.harness import ChatWorld, ManualClock, Person, chat_world


async def record(world: ChatWorld, teacher: Person, room_id: int,
                 who: Person) -> Attendance:
    _, records = await world.services.rooms.attendance(teacher.user, room_id)
    (mine,) = [r for r in records if r.user.id == who.id]
    return mine


async def until_offline(world: ChatWorld, teacher: Person, room_id: int, who: Person) -> None:
    """A closed connection is recorded by the server soon after, not at once (and no event
    tells a test when: the database is polled)."""
    while True:
        if not (await record(world, teacher, room_id, who)).open_connections:
            return
        await trio.sleep(0.01)


async def test_join_leave_rejoin_timings_two_tabs_counted_once(db_url: str) -> None:
    clock = ManualClock()
    start = clock.now

    def at(seconds: float) -> datetime:
        return start + timedelta(seconds=seconds)

    with trio.fail_after(15):
        async with chat_world(db_url, clock=clock) as world:
            lesson = await world.live_class("teacher", "ann", "bob")
            teacher, ann, bob = lesson.people
            rid = lesson.room.id
            async with world.joined(rid, teacher, bob) as (t, b):
                await b.sync()
                async with world.connect(ann) as tab1:
                    await tab1.join(rid)                                     # t = 0
                    await tab1.sync()  # the join is recorded once the join has been handled
                    clock.advance(20)
                    async with world.connect(ann) as tab2:
                        await tab2.join(rid)                                 # t = 20
                        await tab2.sync()
                        clock.advance(40)
                        await tab1.request("room/leave", {"room_id": rid})   # t = 60
                        mine = await record(world, teacher, rid, ann)
                        assert mine.open_connections == 1 and mine.last_leave is None
                        clock.advance(40)
                    await until_offline(world, teacher, rid, ann)            # t = 100
                    mine = await record(world, teacher, rid, ann)
                    assert mine.first_join == at(0) and mine.last_leave == at(100)
                    assert mine.seconds_connected == 100  # not 40 + 80
                    clock.advance(200)
                    await tab1.join(rid, after=0, event="room/rejoin")       # t = 300
                    await tab1.sync()
                    clock.advance(30)
                await until_offline(world, teacher, rid, ann)                # t = 330
                mine = await record(world, teacher, rid, ann)
                assert (mine.first_join, mine.last_join, mine.last_leave) == (at(0), at(300),
                                                                              at(330))
                assert mine.seconds_connected == 130

                clock.advance(70)
                await t.request("room/close", {"room_id": rid})             # t = 400
                _, records = await world.services.rooms.attendance(teacher.user, rid)
                by_user = {r.user.id: r for r in records}
                assert set(by_user) == {teacher.id, ann.id, bob.id}
                assert by_user[bob.id].last_leave == at(400)
                assert by_user[bob.id].seconds_connected == 400
                assert by_user[ann.id].seconds_connected == 130
                assert all(r.open_connections == 0 for r in records)
                # Leaving after the end changes nothing.
                clock.advance(50)
            await trio.sleep(0.05)
            _, records = await world.services.rooms.attendance(teacher.user, rid)
            assert {r.user.id: r.seconds_connected for r in records}[bob.id] == 400


async def test_attendance_in_real_time(db_url: str) -> None:
    """The same with the real clock and generous tolerances."""
    with trio.fail_after(10):
        async with chat_world(db_url) as world:
            lesson = await world.live_class("teacher", "ann")
            teacher, ann = lesson.people
            room = lesson.room
            began = trio.current_time()
            async with world.connect(ann) as tab1, world.connect(ann) as tab2:
                await tab1.join(room.id)
                await tab1.sync()
                await trio.sleep(0.3)
                await tab2.join(room.id)
                await tab2.sync()
                await trio.sleep(0.3)
            await until_offline(world, teacher, room.id, ann)
            elapsed = trio.current_time() - began
            mine = await record(world, teacher, room.id, ann)
            assert 0.5 <= mine.seconds_connected <= elapsed + 0.1
            assert mine.last_leave is not None
            assert 0.5 <= (mine.last_leave - mine.first_join).total_seconds() <= elapsed + 0.1
