"""Who receives what: public events reach every member, private ones only their sender's and
recipient's connections, live and in history."""

from __future__ import annotations

import trio

from tests.chat.harness import Frame, Peer, chat_world

PRIVATE_EVENTS = {"message/to_mentor", "message/to_client", "signal", "sharing/code_send",
                  "sharing/code_update", "steps/status/to_mentor", "steps/status/to_client",
                  "exercise/feedback"}


def stored(frames: list[Frame]) -> list[tuple[str, str]]:
    """(event, text or value) of every stored event a client received, in order."""
    out = []
    for frame in frames:
        if "seq" in frame:
            data = frame["data"]
            out.append((frame["event"], str(data.get("text", data.get("value", "")))))
    return out


async def read_until_text(peer: Peer, text: str) -> None:
    await peer.have(lambda f: f["data"].get("text") == text)


async def test_private_events_reach_only_sender_and_recipient(db_url: str) -> None:
    with trio.fail_after(20):
        async with chat_world(db_url) as world:
            lesson = await world.live_class("teacher", "ann", "bob")
            teacher, ann, bob = lesson.people
            rid = lesson.room.id
            async with world.joined(rid, teacher, ann, ann, bob) as (t, a1, a2, b):
                await a1.request("message", {"room_id": rid, "text": "public from ann"})
                await a1.request("message/to_mentor", {"room_id": rid, "text": "ann asks"})
                await t.request("message/to_client",
                                {"room_id": rid, "user_id": ann.id, "text": "to ann only"})
                await a2.request("signal", {"room_id": rid, "value": "HELP"})
                await a1.request("sharing/code_send", {"room_id": rid, "files": [
                    {"filename": "a.py", "status": "new", "content": "secret = 1"}]})
                await a1.request("steps/status/to_mentor",
                                 {"room_id": rid, "step": 0, "status": "DONE"})
                await t.request("exercise/feedback",
                                {"room_id": rid, "user_id": ann.id, "accepted": False})
                await b.request("message/to_mentor", {"room_id": rid, "text": "bob asks"})
                await t.request("message", {"room_id": rid, "text": "the end"})
                for peer in (t, a1, a2, b):
                    await read_until_text(peer, "the end")
                    await peer.sync()

                everything = [
                    ("message", "public from ann"), ("message/to_mentor", "ann asks"),
                    ("message/to_client", "to ann only"), ("signal", "HELP"),
                    ("sharing/code_send", ""), ("steps/status/to_mentor", ""),
                    ("exercise/feedback", ""), ("message/to_mentor", "bob asks"),
                    ("message", "the end")]
                anns = [e for e in everything if e[1] != "bob asks"]
                bobs = [("message", "public from ann"), ("message/to_mentor", "bob asks"),
                        ("message", "the end")]
                assert stored(t.log) == everything
                assert stored(a1.log) == anns
                assert stored(a2.log) == anns
                assert stored(b.log) == bobs
                assert "secret = 1" not in repr(b.log)

                # History after a reconnect: the same visibility, whatever `after` says.
                for person, expected in ((teacher, everything), (ann, anns), (bob, bobs)):
                    async with world.connect(person) as again:
                        await again.join(rid, after=0)
                        history = await again.sync()
                        assert stored(history) == expected, person.user.username
                        seqs = [f["seq"] for f in history if "seq" in f]
                        assert seqs == sorted(seqs)
                        await again.join(rid, after=seqs[1])
                        assert stored(await again.sync()) == expected[2:]

                # The private conversation, as each side asks for it.
                def texts(frame: Frame) -> list[str]:
                    return [str(m["data"].get("text", m["event"]))
                            for m in frame["data"]["messages"]]

                with_ann = ["ann asks", "to ann only", "signal", "sharing/code_send",
                            "steps/status/to_mentor", "exercise/feedback"]
                got = await a1.request("message/user", {"room_id": rid}, answer="message/user")
                assert got["data"]["user_id"] == teacher.id and texts(got) == with_ann
                got = await t.request("message/user", {"room_id": rid, "user_id": ann.id},
                                      answer="message/user")
                assert texts(got) == with_ann
                got = await b.request("message/user", {"room_id": rid, "user_id": ann.id},
                                      answer="message/user")
                assert texts(got) == ["bob asks"]


async def test_room_update_reaches_members_of_the_class_only(db_url: str) -> None:
    with trio.fail_after(10):
        async with chat_world(db_url) as world:
            teacher = await world.person("teacher")
            ann = await world.person("ann")
            olga = await world.person("olga")
            other = await world.person("otto")
            classroom = await world.classroom(teacher, ann)
            await world.classroom(other, olga, name="Elsewhere")
            async with (world.connect(teacher) as t, world.connect(ann) as a,
                        world.connect(olga) as o):
                made = await t.request("room/create", {"classroom_id": classroom.id,
                                                       "kind": "discussion", "topic": "DNS"},
                                       answer="room/update")
                room_id = made["data"]["room"]["id"]
                update = await a.expect("room/update")
                assert update["data"]["room"]["id"] == room_id
                assert await o.sync() == []
                await a.join(room_id)
                await a.request("message", {"room_id": room_id, "text": "in a discussion"})
                assert await o.sync() == []


async def test_student_code_and_signal_never_reach_other_students(db_url: str) -> None:
    with trio.fail_after(10):
        async with chat_world(db_url) as world:
            lesson = await world.live_class("teacher", "ann", "bob")
            teacher, ann, bob = lesson.people
            room = lesson.room
            async with world.joined(room.id, teacher, ann, bob) as (t, a, b):
                await t.request("sharing/start", {"room_id": room.id})
                for event, data in (
                        ("sharing/code_send", {"files": [
                            {"filename": "x.py", "status": "new", "content": "x"}]}),
                        ("sharing/code_update", {"files": [
                            {"filename": "x.py", "status": "changed", "content": "y"}]}),
                        ("signal", {"value": "DONE"}),
                        ("steps/status/to_mentor", {"step": 1, "status": "HELP"})):
                    await a.request(event, {"room_id": room.id, **data})
                    got = await t.next(event)
                    assert got["data"]["from"]["id"] == ann.id
                await t.request("message", {"room_id": room.id, "text": "barrier"})
                await read_until_text(b, "barrier")
                assert not [f for f in b.log if f["event"] in PRIVATE_EVENTS]
                table = await t.request("steps/table", {"room_id": room.id},
                                        answer="steps/table")
                rows = {s["user_id"]: s for s in table["data"]["students"]}
                assert rows[ann.id]["signal"] == "DONE" and rows[bob.id]["signal"] == "NONE"
