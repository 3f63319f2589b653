"""Departures written together (Storage.attendance_leave_many): each departure counts as if
written alone, in list order and with its own time; the whole list is one transaction of a
few statements, however long it is."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import trio

from storage import Attendance, Departure, Room, Storage, User
from storage.database import Executor

T0 = datetime(2026, 3, 4, 9, 0, 0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def two_rooms(storage: Storage, name: str) -> tuple[User, Room, Room]:
    teacher = await storage.create_user(f"t{name}", "T", "h", T0)
    classroom = await storage.create_classroom("c", "", f"DEP{name}".upper(), teacher, T0)
    one = await storage.create_room(classroom.id, "live", "", teacher.id, T0)
    two = await storage.create_room(classroom.id, "live", "", teacher.id, T0)
    return teacher, one, two


def shape(records: list[Attendance]) -> dict[int, tuple[object, ...]]:
    return {r.user.id: (r.first_join, r.last_join, r.last_leave, r.seconds_connected,
                        r.open_connections) for r in records}


async def open_connections(storage: Storage, room_id: int) -> dict[tuple[int, str], int]:
    rows = await storage.db.fetch_all(
        "SELECT user_id, server, connections FROM open_connections WHERE room_id = %s",
        (room_id,))
    return {(int(u), str(s)): int(c) for u, s, c in rows}


async def test_a_user_with_several_connections_leaving_in_one_batch(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher, room, _ = await two_rooms(storage, "a")
        ann = await storage.create_user("ann", "Ann", "h", T0)
        for second in (10, 20, 30):  # three tabs
            await storage.attendance_join(room.id, ann.id, at(second), server="a")
        await storage.attendance_join(room.id, teacher.id, at(5), server="a")
        await storage.attendance_leave_many([
            Departure(room.id, ann.id, at(40), "a"),
            Departure(room.id, teacher.id, at(45), "a"),
            Departure(room.id, ann.id, at(50), "a"),
        ])
        by_user = {r.user.id: r for r in await storage.list_attendance(room.id)}
        assert (by_user[ann.id].open_connections, by_user[ann.id].last_leave) == (1, None)
        assert by_user[teacher.id].last_leave == at(45)
        assert by_user[teacher.id].seconds_connected == 40.0
        assert await open_connections(storage, room.id) == {(ann.id, "a"): 1}
        # The last tab: attendance ends at its own time, counted from the first join.
        await storage.attendance_leave_many([Departure(room.id, ann.id, at(70.5), "a")])
        by_user = {r.user.id: r for r in await storage.list_attendance(room.id)}
        assert (by_user[ann.id].open_connections, by_user[ann.id].last_leave,
                by_user[ann.id].seconds_connected) == (0, at(70.5), 60.5)
        assert await open_connections(storage, room.id) == {}


async def test_each_departure_keeps_its_own_time_and_never_precedes_the_arrival(
        storage: Storage) -> None:
    """Departures recorded late (the database was down) come with their own times: the last
    connection's time ends the attendance, or the last join when that is later."""
    with trio.fail_after(10):
        _, room, _ = await two_rooms(storage, "b")
        ann = await storage.create_user("ann", "Ann", "h", T0)
        bob = await storage.create_user("bob", "Bob", "h", T0)
        await storage.attendance_join(room.id, ann.id, at(0), server="a")
        await storage.attendance_join(room.id, ann.id, at(1), server="a")
        await storage.attendance_join(room.id, bob.id, at(100), server="a")
        await storage.attendance_leave_many([
            Departure(room.id, ann.id, at(30), "a"),
            Departure(room.id, ann.id, at(31.25), "a"),  # her last: ends at its own time
            Departure(room.id, bob.id, at(90), "a"),  # before bob's join was written
        ])
        by_user = {r.user.id: r for r in await storage.list_attendance(room.id)}
        assert (by_user[ann.id].last_leave, by_user[ann.id].seconds_connected) == (
            at(31.25), 31.25)
        assert (by_user[bob.id].last_leave, by_user[bob.id].seconds_connected) == (at(100), 0.0)
        assert all(r.open_connections == 0 for r in by_user.values())


async def test_departures_of_other_servers_and_cleared_servers(storage: Storage) -> None:
    """Connections count per server: a departure from a server that holds none of the user's
    (cleared for dead) changes nothing; one from a live server still counts."""
    with trio.fail_after(10):
        teacher, room, _ = await two_rooms(storage, "c")
        await storage.renew_lease("a", at(0), at(30))
        await storage.attendance_join(room.id, teacher.id, at(1), server="a")
        await storage.attendance_join(room.id, teacher.id, at(2), server="b")
        await storage.attendance_join(room.id, teacher.id, at(3), server="b")
        assert await storage.clear_server("a", at(60)) == 1  # a's one connection ends
        await storage.attendance_leave_many([
            Departure(room.id, teacher.id, at(70), "a"),  # cleared already: nothing
            Departure(room.id, teacher.id, at(80), "b"),
            Departure(room.id, teacher.id, at(81), "a"),  # nothing either
        ])
        [record] = await storage.list_attendance(room.id)
        assert (record.open_connections, record.last_leave) == (1, None)
        assert await open_connections(storage, room.id) == {(teacher.id, "b"): 1}
        await storage.attendance_leave_many([Departure(room.id, teacher.id, at(90), "b"),
                                             Departure(room.id, teacher.id, at(95), "b")])
        [record] = await storage.list_attendance(room.id)
        assert (record.open_connections, record.last_leave, record.seconds_connected) == (
            0, at(90), 89.0)


async def test_a_batch_counts_as_the_same_departures_one_by_one(storage: Storage) -> None:
    """Random joins and leaves of a few users over two servers: one room gets the leaves
    one by one, the other the same leaves in batches; both end the same, row for row."""
    rng = random.Random(7)
    with trio.fail_after(30):
        _, alone, together = await two_rooms(storage, "d")
        users = [await storage.create_user(f"u{i}", "U", "h", T0) for i in range(6)]
        pending: list[tuple[int, datetime, str]] = []
        second = 0.0
        for _ in range(120):
            second += rng.choice((0.5, 1.0, 2.25))
            user = rng.choice(users)
            server = rng.choice(("a", "b", ""))
            if rng.random() < 0.45:
                # Joins go to both rooms at once; the leaves before them are written first
                # (a departure is written before any later arrival, see chat/departures.py).
                if pending:
                    for user_id, when, where in pending:
                        await storage.attendance_leave(alone.id, user_id, when, server=where)
                    await storage.attendance_leave_many(
                        [Departure(together.id, u, w, s) for u, w, s in pending])
                    pending = []
                for room in (alone, together):
                    await storage.attendance_join(room.id, user.id, at(second), server=server)
            else:
                # Some leave times lie before the user's last join: written late.
                pending.append((user.id, at(second - rng.choice((0.0, 0.0, 3.0))), server))
        for user_id, when, where in pending:
            await storage.attendance_leave(alone.id, user_id, when, server=where)
        await storage.attendance_leave_many(
            [Departure(together.id, u, w, s) for u, w, s in pending])
        assert shape(await storage.list_attendance(together.id)) == shape(
            await storage.list_attendance(alone.id))
        assert await open_connections(storage, together.id) == await open_connections(
            storage, alone.id)


@asynccontextmanager
async def counted(storage: Storage) -> AsyncIterator[dict[str, int]]:
    """Counts the transactions and statements of the storage's database meanwhile."""
    counts = {"transactions": 0, "statements": 0}
    db = storage.db
    original = db.transaction

    class Counting(Executor):
        def __init__(self, inner: Executor) -> None:
            self.inner = inner
            self.dialect = inner.dialect

        async def execute(self, sql: str, params: object = ()) -> object:  # type: ignore[override]
            counts["statements"] += 1
            return await self.inner.execute(sql, params)  # type: ignore[arg-type]

        async def fetch_all(self, sql: str, params: object = ()) -> object:  # type: ignore[override]
            counts["statements"] += 1
            return await self.inner.fetch_all(sql, params)  # type: ignore[arg-type]

    @asynccontextmanager
    async def transaction() -> AsyncIterator[Executor]:
        counts["transactions"] += 1
        async with original() as tx:
            yield Counting(tx)

    db.transaction = transaction  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        db.transaction = original  # type: ignore[method-assign]


async def test_a_thousand_departures_are_one_transaction_of_few_statements(
        storage: Storage) -> None:
    with trio.fail_after(60):
        _, room, other = await two_rooms(storage, "e")
        now = T0
        users = [await storage.create_user(f"m{i}", "M", "h", now) for i in range(1100)]
        ids = [u.id for u in users]
        for room_id in (room.id, other.id):
            await storage.attendance_join_many(room_id, ids, at(1), server="a")
        await storage.attendance_join_many(room.id, ids[:10], at(2), server="a")  # 2nd tabs
        departures = [Departure(room.id, user_id, at(100 + n / 1000), "a")
                      for n, user_id in enumerate(ids)]
        departures += [Departure(other.id, user_id, at(200), "a") for user_id in ids[:600]]
        async with counted(storage) as counts:
            await storage.attendance_leave_many(departures)
        assert counts["transactions"] == 1
        # Pages of 500 users: rooms' locks, then reads and writes a page at a time.
        assert counts["statements"] <= 30, counts
        records = {r.user.id: r for r in await storage.list_attendance(room.id)}
        assert [records[u].open_connections for u in ids[:10]] == [1] * 10
        for n, user_id in enumerate(ids[10:], start=10):
            assert records[user_id].last_leave == at(100 + n / 1000)
            assert records[user_id].seconds_connected == (at(100 + n / 1000)
                                                          - at(1)).total_seconds()
        records = {r.user.id: r for r in await storage.list_attendance(other.id)}
        assert sum(r.open_connections for r in records.values()) == 500
        assert await open_connections(storage, room.id) == {(u, "a"): 1 for u in ids[:10]}
