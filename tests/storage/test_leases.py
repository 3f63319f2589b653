"""Chat servers' leases: the connections a dead server held end as of its last renewal; a
user still connected through another server stays online."""

from __future__ import annotations

from datetime import datetime, timedelta

import trio

from storage import Storage

T0 = datetime(2026, 3, 4, 9, 0, 0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def test_a_lapsed_server_connections_end_at_its_last_renewal(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher = await storage.create_user("t", "T", "h", T0)
        ann = await storage.create_user("ann", "Ann", "h", T0)
        classroom = await storage.create_classroom("c", "", "LEASE1", teacher, T0)
        room = await storage.create_room(classroom.id, "live", "", teacher.id, T0)
        await storage.renew_lease("a", at(0), at(30))
        await storage.renew_lease("b", at(0), at(30))
        await storage.attendance_join(room.id, ann.id, at(1), server="a")
        await storage.attendance_join(room.id, ann.id, at(2), server="a")  # a second tab
        await storage.attendance_join(room.id, teacher.id, at(1), server="a")
        await storage.attendance_join(room.id, teacher.id, at(5), server="b")
        await storage.renew_lease("a", at(10), at(40))  # a's last sign of life
        await storage.renew_lease("b", at(40), at(70))
        assert await storage.lapsed_servers(at(35)) == []
        assert await storage.lapsed_servers(at(45)) == ["a"]
        assert await storage.clear_server("a", at(45)) == 2
        by_user = {a.user.id: a for a in await storage.list_attendance(room.id)}
        assert by_user[ann.id].open_connections == 0
        assert by_user[ann.id].last_leave == at(10)
        assert by_user[ann.id].seconds_connected == 9.0
        assert by_user[teacher.id].open_connections == 1  # still there through b
        assert await storage.lapsed_servers(at(45)) == []
        # b's connection leaving later counts as usual; nothing of a's is left to end.
        await storage.attendance_leave(room.id, teacher.id, at(50), server="b")
        assert await storage.clear_server("a", at(60)) == 0
        by_user = {a.user.id: a for a in await storage.list_attendance(room.id)}
        assert by_user[teacher.id].open_connections == 0
        assert by_user[teacher.id].seconds_connected == 49.0


async def test_a_server_that_never_renewed_is_cleared_too(storage: Storage) -> None:
    with trio.fail_after(10):
        teacher = await storage.create_user("t", "T", "h", T0)
        classroom = await storage.create_classroom("c", "", "LEASE2", teacher, T0)
        room = await storage.create_room(classroom.id, "live", "", teacher.id, T0)
        await storage.attendance_join(room.id, teacher.id, at(1), server="ghost")
        assert await storage.lapsed_servers(at(2)) == ["ghost"]
        assert await storage.clear_server("ghost", at(3)) == 1
        [record] = await storage.list_attendance(room.id)
        assert (record.open_connections, record.last_leave) == (0, at(3))


async def test_joins_written_together_count_as_joins_one_by_one(storage: Storage) -> None:
    """attendance_join_many (a join storm's group commit): a user listed twice is two
    connections, someone already there keeps their last join, each counts per server."""
    with trio.fail_after(10):
        teacher = await storage.create_user("t", "T", "h", T0)
        ann = await storage.create_user("ann", "Ann", "h", T0)
        bob = await storage.create_user("bob", "Bob", "h", T0)
        classroom = await storage.create_classroom("c", "", "LEASE3", teacher, T0)
        room = await storage.create_room(classroom.id, "live", "", teacher.id, T0)
        await storage.attendance_join(room.id, bob.id, at(1), server="a")
        await storage.attendance_join_many(room.id, [ann.id, bob.id, ann.id], at(2),
                                           server="a")
        by_user = {a.user.id: a for a in await storage.list_attendance(room.id)}
        assert by_user[ann.id].open_connections == 2
        assert by_user[ann.id].first_join == at(2)
        assert by_user[bob.id].open_connections == 2
        assert by_user[bob.id].first_join == at(1)
        # Every connection is the server's to close, as of its last renewal.
        await storage.renew_lease("a", at(30), at(60))
        assert await storage.clear_server("a", at(70)) == 2
        by_user = {a.user.id: a for a in await storage.list_attendance(room.id)}
        assert by_user[ann.id].open_connections == by_user[bob.id].open_connections == 0
        assert by_user[ann.id].seconds_connected == 28.0
        assert by_user[bob.id].seconds_connected == 29.0
