"""Departures as the chat server writes them (chat/departures.py): the end of a lecture is
written in a few transactions, not one per connection, each departure with its own time;
a user's several tabs count as in the database alone; a user who leaves and comes back
leaves first; departures during a database outage are written, with their times, once it
is back. Real servers, real WebSocket clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import attrs
import pytest
import trio

from storage import Attendance, Departure
from storage.mysql import MySQLParams
from tests.chat.harness import ChatWorld, ManualClock, Person, chat_world
from tests.conftest import throwaway_mysql_url
from tests.tcp_proxy import TcpProxy


class Writes:
    """Every call of the storage's attendance_leave_many, and a gate the first waits at."""

    def __init__(self, world: ChatWorld, *, hold_first: bool = False) -> None:
        self.calls: list[list[Departure]] = []
        self.written: list[list[Departure]] = []
        self.gate = trio.Event()
        if not hold_first:
            self.gate.set()
        storage = world.services.storage
        original = storage.attendance_leave_many

        async def counted(departures: Sequence[Departure]) -> None:
            self.calls.append(list(departures))
            if len(self.calls) == 1:
                await self.gate.wait()
            await original(departures)
            self.written.append(list(departures))

        storage.attendance_leave_many = counted  # type: ignore[method-assign]

    async def until_called(self, times: int) -> None:
        while True:
            if len(self.calls) >= times:
                return
            await trio.sleep(0.01)


async def records(world: ChatWorld, teacher: Person, room_id: int) -> dict[int, Attendance]:
    _, found = await world.services.rooms.attendance(teacher.user, room_id)
    return {r.user.id: r for r in found}


async def until_closed(world: ChatWorld, teacher: Person, room_id: int,
                       people: Sequence[Person]) -> dict[int, Attendance]:
    """Poll until none of these people has an open connection to the room."""
    while True:
        found = await records(world, teacher, room_id)
        if all(found[p.id].open_connections == 0 for p in people):
            return found
        await trio.sleep(0.02)


async def until_clients(world: ChatWorld, count: int) -> None:
    """Wait until the server holds `count` connections: a connection leaves the count after
    its departure was noted."""
    while True:
        if world.server.clients == count:
            return
        await trio.sleep(0.01)


@attrs.define
class Tab:
    close: trio.Event = attrs.field(factory=trio.Event)
    closed: trio.Event = attrs.field(factory=trio.Event)


class Tabs:
    """Connections opened one by one, each in a task of its own, and closed in any order
    (a client's nursery must be left by the task that opened it, innermost first)."""

    def __init__(self, world: ChatWorld, nursery: trio.Nursery) -> None:
        self.world = world
        self.nursery = nursery
        self.tabs: list[Tab] = []

    async def open(self, person: Person, room_id: int) -> None:
        tab = Tab()
        self.tabs.append(tab)
        await self.nursery.start(self._run, tab, person, room_id)

    async def _run(self, tab: Tab, person: Person, room_id: int,
                   task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with self.world.connect(person) as peer:
                await peer.join(room_id)
                await peer.sync()  # the join is handled in full (its attendance written)
                task_status.started()
                await tab.close.wait()
        finally:
            tab.closed.set()

    async def close(self, *indexes: int) -> None:
        """Close these connections (by opening order) at once."""
        for index in indexes:
            self.tabs[index].close.set()
        for index in indexes:
            await self.tabs[index].closed.wait()


@asynccontextmanager
async def tabs_of(world: ChatWorld, writes: Writes) -> AsyncIterator[Tabs]:
    try:
        async with trio.open_nursery() as nursery:
            yield Tabs(world, nursery)
            nursery.cancel_scope.cancel()
    finally:
        writes.gate.set()  # (a failed test must not leave the server's writer waiting)


async def test_the_end_of_a_lecture_is_written_together_each_with_its_own_time(
        db_url: str) -> None:
    clock = ManualClock()
    start = clock.now

    def at(seconds: float) -> datetime:
        return start + timedelta(seconds=seconds)

    with trio.fail_after(20):
        async with chat_world(db_url, clock=clock) as world:
            lesson = await world.live_class("teacher", *[f"s{i}" for i in range(24)])
            teacher, students = lesson.teacher, lesson.students
            rid = lesson.room.id
            writes = Writes(world, hold_first=True)
            async with tabs_of(world, writes) as tabs:
                await tabs.open(teacher, rid)                    # tab 0
                for student in students:                         # tabs 1..24, at t = 0
                    await tabs.open(student, rid)
                await tabs.open(students[1], rid)                # tab 25: s1's second tab
                await until_clients(world, 26)
                clock.advance(10)
                await tabs.close(1)                              # s0 leaves at t = 10
                await until_clients(world, 25)
                await writes.until_called(1)  # its write has begun (and waits at the gate)
                clock.advance(10)
                await tabs.close(*range(2, 13))                  # s1..s11 at t = 20
                await until_clients(world, 14)
                clock.advance(10)
                await tabs.close(*range(13, 26))                 # s12..s23, s1's 2nd at 30
                await until_clients(world, 1)
                writes.gate.set()
                found = await until_closed(world, teacher, rid, students)
                # The first alone (it was being written), everyone after it together.
                assert [len(call) for call in writes.calls] == [1, 24]
                assert found[teacher.id].open_connections == 1
                for n, student in enumerate(students):
                    left = 10 if n == 0 else 20 if n < 12 and n != 1 else 30
                    mine = found[student.id]
                    assert (mine.first_join, mine.last_leave) == (at(0), at(left)), n
                    assert mine.seconds_connected == left, n


async def test_a_user_who_leaves_and_comes_back_leaves_first(db_url: str) -> None:
    """Her departure's write is under way when she joins again: her join waits for it."""
    clock = ManualClock()
    start = clock.now
    with trio.fail_after(30):
        async with chat_world(db_url, clock=clock) as world:
            lesson = await world.live_class("teacher", "ann")
            teacher, ann = lesson.people
            rid = lesson.room.id
            writes = Writes(world, hold_first=True)
            async with tabs_of(world, writes) as tabs:
                await tabs.open(teacher, rid)
                await tabs.open(ann, rid)                        # t = 0
                clock.advance(10)
                await tabs.close(1)                              # t = 10
                await writes.until_called(1)
                clock.advance(10)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(tabs.open, ann, rid)      # t = 20
                    await trio.sleep(0.3)
                    assert len(writes.written) == 0  # (her join waits meanwhile)
                    writes.gate.set()
                mine = (await records(world, teacher, rid))[ann.id]
                assert (mine.first_join, mine.last_leave, mine.last_join) == (
                    start, start + timedelta(seconds=10), start + timedelta(seconds=20))
                assert (mine.open_connections, mine.seconds_connected) == (1, 10.0)


@asynccontextmanager
async def world_behind_proxy(clock: ManualClock) -> AsyncIterator[tuple[ChatWorld, TcpProxy]]:
    async with throwaway_mysql_url() as url:
        p = MySQLParams.from_url(url)
        async with TcpProxy(p.host, p.port) as proxy, chat_world(
                proxy.via(url), clock=clock, relay_interval=0.05) as world:
            yield world, proxy


@pytest.mark.mysql
async def test_departures_during_an_outage_are_written_with_their_times_once_it_is_back(
) -> None:
    clock = ManualClock()
    start = clock.now

    def at(seconds: float) -> datetime:
        return start + timedelta(seconds=seconds)

    with trio.fail_after(30):
        async with world_behind_proxy(clock) as (world, proxy):
            lesson = await world.live_class("teacher", "ann", "bob")
            teacher, ann, bob = lesson.people
            rid = lesson.room.id
            writes = Writes(world)
            async with tabs_of(world, writes) as tabs:
                await tabs.open(teacher, rid)
                await tabs.open(ann, rid)                        # t = 0
                await tabs.open(bob, rid)
                clock.advance(5)
                await tabs.open(ann, rid)                        # her second tab, t = 5
                proxy.cut()
                clock.advance(5)
                await tabs.close(1)                              # ann's first, t = 10
                await until_clients(world, 3)
                clock.advance(10)
                await tabs.close(2)                              # bob, t = 20
                await until_clients(world, 2)
                clock.advance(10)
                await tabs.close(3)                              # ann's second, t = 30
                await until_clients(world, 1)
                await writes.until_called(2)  # tried, and tried again, in vain
                assert writes.written == []
                clock.advance(100)  # (the times written are the departures' own)
                proxy.restore()
                found = await until_closed(world, teacher, rid, [ann, bob])
                assert [[(d.user_id, d.at) for d in w] for w in writes.written] == [
                    [(ann.id, at(10)), (bob.id, at(20)), (ann.id, at(30))]]
                assert (found[ann.id].last_leave, found[ann.id].seconds_connected) == (
                    at(30), 30.0)
                assert (found[bob.id].last_leave, found[bob.id].seconds_connected) == (
                    at(20), 20.0)
                assert found[teacher.id].open_connections == 1
