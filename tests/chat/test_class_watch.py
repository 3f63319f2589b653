"""`class/watch`: a page waiting on a class's Live tab is told when a session starts or ends,
pushed by the chat server (`class/live`), whoever started it and from wherever."""

from __future__ import annotations

import trio

from chat.membership import CHECK_GAP
from tests.chat.harness import chat_world


async def test_watchers_hear_a_session_start_and_end(db_url: str) -> None:
    with trio.fail_after(20):
        async with chat_world(db_url) as world:
            teacher = await world.person("teacher")
            ann = await world.person("ann")
            eve = await world.person("eve")
            classroom = await world.classroom(teacher, ann)
            async with world.connect(ann) as a, world.connect(eve) as e:
                now = await a.request("class/watch", {"classroom_id": classroom.id},
                                      answer="class/live")
                assert now["data"] == {"classroom_id": classroom.id, "room": None}
                # Not a member: the class does not exist for her.
                assert await e.refused("class/watch", {"classroom_id": classroom.id}) == \
                    "not_found"
                assert await a.refused("class/watch", {"classroom_id": "x"}) == "invalid"

                # Started in this process (a page's form or the API): told at once.
                room = await world.live_room(teacher, classroom)
                started = await a.next("class/live")
                assert started["data"]["room"]["id"] == room.id
                assert started["data"]["room"]["open"] is True
                await world.services.rooms.end(teacher.user, room.id)
                ended = await a.next("class/live")
                assert ended["data"]["room"] is None

                # Started by another process (straight in the database here): found by the
                # watch's own look at the database, within about a second.
                other = await world.services.storage.create_room(
                    classroom.id, "live", "", teacher.id, world.services.clock())
                with trio.fail_after(5):
                    elsewhere = await a.next("class/live")
                assert elsewhere["data"]["room"]["id"] == other.id
                assert not e.seen("class/live")


async def test_a_removed_student_cannot_write_in_a_room_joined_before(db_url: str) -> None:
    with trio.fail_after(20):
        async with chat_world(db_url) as world:
            lesson = await world.live_class("teacher", "ann")
            teacher, ann = lesson.people
            rid = lesson.room.id
            async with world.joined(rid, teacher, ann) as (t, a):
                await a.request("message", {"room_id": rid, "text": "still here"})
                await world.services.classes.remove_student(teacher.user,
                                                            lesson.classroom.id, ann.id)
                assert await a.refused("message", {"room_id": rid, "text": "and now?"}) == \
                    "not_found"
                await t.request("message", {"room_id": rid, "text": "after"})
                await a.sync()  # everything queued for her before this has been read
                assert "after" not in a.texts()  # she left the room too
                assert await a.refused("room/join", {"room_id": rid}) == "not_found"


async def test_a_student_removed_from_the_class_hears_no_more_of_its_sessions(
        db_url: str) -> None:
    with trio.fail_after(20):
        async with chat_world(db_url) as world:
            teacher = await world.person("teacher")
            ann = await world.person("ann")
            bob = await world.person("bob")
            classroom = await world.classroom(teacher, ann, bob)
            async with world.connect(ann) as a, world.connect(bob) as b:
                for peer in (a, b):
                    await peer.request("class/watch", {"classroom_id": classroom.id},
                                       answer="class/live")
                await world.services.classes.remove_student(teacher.user, classroom.id,
                                                            ann.id)
                # The membership check runs on the class's change, CHECK_GAP after the last.
                await trio.sleep(2 * CHECK_GAP)
                room = await world.live_room(teacher, classroom)
                started = await b.next("class/live")
                assert started["data"]["room"]["id"] == room.id
                await a.sync()
                assert not a.seen("class/live")[1:]  # only the answer to her watch
