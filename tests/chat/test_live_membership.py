"""A student removed from a class, or who left it, is taken out of its live rooms on every
chat server at once (`room/kill` with the reason) and gets nothing more from them, even
without sending anything; the others stay."""

from __future__ import annotations

import pytest
import trio

from chat.membership import NOT_A_MEMBER
from tests.chat.harness import Peer, chat_servers, chat_world


async def taken_out(peer: Peer, room_id: int) -> None:
    kill = await peer.next("room/kill")
    assert kill["data"] == {"room_id": room_id, "user_id": peer.person.id if peer.person
                            else None, "message": NOT_A_MEMBER}


async def test_a_removed_or_leaving_student_leaves_the_rooms_on_every_server(
        db_url: str) -> None:
    with trio.fail_after(20):
        async with chat_servers(db_url, 2) as (one, two), trio.open_nursery() as logs:
            for world in (one, two):  # as `classroom serve` does: reading the change log
                logs.start_soon(world.services.cache.follow)
            lesson = await one.live_class("teacher", "ann", "bob", "cat")
            teacher, ann, bob, cat = lesson.people
            room_id = lesson.room.id
            async with two.joined(room_id, teacher, ann, bob) as (t, a, b), \
                    one.joined(room_id, cat) as (c,):
                # Removed through the first server's process (as an app server would): the
                # second reads the change from the cache's log.
                await one.services.classes.remove_student(
                    teacher.user, lesson.classroom.id, ann.id)
                await taken_out(a, room_id)
                # Left on its own: its own server takes it out at once.
                await one.services.classes.leave(cat.user, lesson.classroom.id)
                await taken_out(c, room_id)
                await t.say(room_id, "after")
                assert "after" in {f["data"].get("text") for f in await b.sync()
                                   } | set(b.texts())
                await a.sync()
                await c.sync()
                assert "after" not in a.texts() and "after" not in c.texts()
                assert not b.seen("room/kill")
                # Coming back needs the class.
                assert await a.refused("room/join", {"room_id": room_id}) == "not_found"
            logs.cancel_scope.cancel()


async def test_who_joins_the_class_and_the_room_during_a_check_stays(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A check's list of members is read before it acts: a student who joins the class and
    then the room in between is not in it, and must not be taken for one who left."""
    with trio.fail_after(20):
        async with chat_world(db_url) as world:
            lesson = await world.live_class("teacher", "ann")
            teacher, ann = lesson.people
            zed = await world.person("zed")
            room_id = lesson.room.id
            classes = world.services.classes
            asked, release = trio.Event(), trio.Event()
            read_members = classes.member_ids

            async def slow_member_ids(classroom_id: int) -> set[int]:
                members = await read_members(classroom_id)  # before zed joins
                asked.set()
                await release.wait()
                return members

            monkeypatch.setattr(classes, "member_ids", slow_member_ids)
            async with world.joined(room_id, teacher, ann) as (t, a):
                await classes.remove_student(teacher.user, lesson.classroom.id, ann.id)
                await asked.wait()
                await classes.join(zed.user, lesson.classroom.join_code)
                async with world.joined(room_id, zed) as (z,):
                    release.set()
                    await taken_out(a, room_id)
                    await t.say(room_id, "welcome")
                    await z.next("message")
                    assert not z.seen("room/kill")
