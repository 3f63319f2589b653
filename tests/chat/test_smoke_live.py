import trio

from tests.chat.harness import chat_world


async def test_message_roundtrip(db_url: str) -> None:
    with trio.fail_after(15):
        async with chat_world(db_url) as world:
            teacher = await world.person("teacher")
            ann = await world.person("ann")
            classroom = await world.classroom(teacher, ann)
            room = await world.services.rooms.open(teacher.user, classroom.id, "live")
            async with world.connect(teacher) as t, world.connect(ann) as a:
                joined = await t.join(room.id)
                assert joined["data"]["you"]["role"] == "instructor"
                await a.join(room.id)
                await a.request("message", {"room_id": room.id, "text": "hi 🧮"})
                got = await t.expect("message")
                assert got["data"]["text"] == "hi 🧮" and got["seq"] == 1
