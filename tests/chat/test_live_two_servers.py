"""Two chat servers on one database: members of one room spread over both see every event,
in seq order, and both name themselves in the join answer."""

from __future__ import annotations

import trio

from tests.chat.harness import ChatWorld


async def test_members_on_two_servers_see_each_others_events(
        two_chat_servers: list[ChatWorld]) -> None:
    one, two = two_chat_servers
    with trio.fail_after(20):
        lesson = await one.live_class("teacher", "ann")
        teacher, ann = lesson.people
        rid = lesson.room.id
        async with one.connect(teacher) as t, two.connect(ann) as a:
            joined_t = await t.join(rid)
            joined_a = await a.join(rid)
            assert joined_t["data"]["room"]["chat_server"] != joined_a["data"]["room"][
                "chat_server"]
            s1 = await t.say(rid, "from one")
            s2 = await a.say(rid, "from two")
            s3 = await t.say(rid, "one again")
            assert s1 < s2 < s3
            for peer in (t, a):
                await peer.have(lambda f: f.get("seq") == s3)
                assert [f["seq"] for f in peer.seen("message")] == [s1, s2, s3]
