import trio

from tests.chat.harness import chat_world


async def test_message_roundtrip(db_url: str) -> None:
    with trio.fail_after(15):
        async with chat_world(db_url) as world:
            lesson = await world.live_class("teacher", "ann")
            teacher, ann = lesson.people
            room = lesson.room
            async with world.connect(teacher) as t, world.connect(ann) as a:
                joined = await t.join(room.id)
                assert joined["data"]["you"]["role"] == "instructor"
                await a.join(room.id)
                await a.request("message", {"room_id": room.id, "text": "hi 🧮"})
                got = await t.expect("message")
                assert got["data"]["text"] == "hi 🧮" and got["seq"] == 1
