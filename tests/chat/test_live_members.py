"""The `room/join` answer's members: the instructor gets the class roster; a student gets the
instructor and who is online now, by display name only (usernames are login names)."""

from __future__ import annotations

import trio

from tests.chat.harness import chat_world


async def test_students_see_the_instructor_and_who_is_online_by_name(db_url: str) -> None:
    with trio.fail_after(15):
        async with chat_world(db_url) as world:
            lesson = await world.live_class("teacher", "ann", "bob", "carl")
            teacher, ann, bob, carl = lesson.people
            rid = lesson.room.id
            async with world.connect(ann) as a:
                # The instructor is listed even when away; offline classmates are not.
                alone = (await a.join(rid))["data"]["members"]
                assert {m["id"]: m["online"] for m in alone} == {teacher.id: False,
                                                                 ann.id: True}
                async with world.joined(rid, teacher, bob) as (t, b):
                    members = (await b.join(rid))["data"]["members"]
                    assert {m["id"] for m in members} == {teacher.id, ann.id, bob.id}
                    assert all(set(m) == {"id", "display_name", "role", "online"}
                               for m in members), members
                    assert {m["display_name"] for m in members} == {"Teacher", "Ann", "Bob"}
                    roster = (await t.join(rid))["data"]["members"]
                    assert {m["id"]: (m["username"], m["online"]) for m in roster} == {
                        teacher.id: ("teacher", True), ann.id: ("ann", True),
                        bob.id: ("bob", True), carl.id: ("carl", False)}
                    await b.sync()
                    await a.have(lambda f: f["event"] == "presence")
                await a.sync()
                presence = a.seen("presence")
                assert presence and all(set(change) == {"user_id", "name", "online"}
                                        for f in presence for change in f["data"]["changes"])
                assert not any("carl" in str(frame) for frame in a.log)


async def test_in_a_big_room_a_student_gets_a_few_names_and_the_count(db_url: str) -> None:
    """Past `listed_online` (here 2) a student's answer lists the instructor, themselves and
    the first others online up to it, and says how many are online: listing everyone made a
    lecture's join storm O(N^2). The instructor still gets the whole roster."""
    with trio.fail_after(20):
        async with chat_world(db_url, listed_online=2) as world:
            lesson = await world.live_class("teacher", "ann", "bob", "carl", "dan")
            teacher, ann, bob, carl, dan = lesson.people
            rid = lesson.room.id
            async with world.joined(rid, ann, bob, carl) as _, world.connect(dan) as d:
                answer = (await d.join(rid))["data"]
                assert answer["online_count"] == 4
                listed = {m["id"]: m["online"] for m in answer["members"]}
                assert listed == {teacher.id: False, dan.id: True, ann.id: True}
                async with world.connect(teacher) as t:
                    answer = (await t.join(rid))["data"]
                    assert answer["online_count"] == 5
                    assert {m["id"] for m in answer["members"] if m["online"]} == {
                        teacher.id, ann.id, bob.id, carl.id, dan.id}
