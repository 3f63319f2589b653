"""Delivery: whatever is stored reaches its audience, and nothing reaches anyone that was not
stored. An event that changes room state (a signal, a step status) is stored together with
that state, so a failing state write cannot leave a stored event nobody was sent."""

from __future__ import annotations

import trio

from tests.chat.harness import ChatWorld, chat_world

_FAIL_STATE = {
    # A database that refuses every new room_state row: the state write of an event fails
    # after (today: in another transaction than) the event's own insert.
    "sqlite": "CREATE TRIGGER fail_state BEFORE INSERT ON room_state"
              " BEGIN SELECT RAISE(ABORT, 'injected fault'); END",
    "mysql": "CREATE TRIGGER fail_state BEFORE INSERT ON room_state FOR EACH ROW"
             " SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'injected fault'",
}


async def refuse_state_writes(world: ChatWorld) -> None:
    storage = world.services.storage
    await storage.db.execute(_FAIL_STATE[storage.backend])


async def test_event_whose_state_write_fails_is_stored_and_sent_or_neither(
        db_url: str) -> None:
    with trio.fail_after(20):
        async with chat_world(db_url) as world:
            lesson = await world.live_class("teacher", "ann")
            rid = lesson.room.id
            async with world.joined(rid, *lesson.people) as (t, a):
                before = await world.last_seq(rid)
                await refuse_state_writes(world)
                answer = await a.call("signal", {"room_id": rid, "value": "HELP"})
                await t.sync()
                stored = await world.services.storage.list_room_events(rid, after=before)
                told = t.seen("signal")
                if answer["event"] == "ack":
                    assert [e.seq for e in stored] == [answer["data"]["seq"]]
                    assert [f["seq"] for f in told] == [answer["data"]["seq"]]
                else:
                    # Refused (a statement the database refused: "internal"): nothing
                    # stored, the room's seq unchanged, nobody told.
                    assert answer["data"]["code"] in ("internal", "unavailable"), answer
                    assert stored == [], "stored but never delivered"
                    assert await world.last_seq(rid) == before
                    assert told == []
                # The room goes on: a later event gets the next seq and reaches everyone.
                seq = await a.say(rid, "still here")
                assert seq == before + len(stored) + 1
                await t.have(lambda f: f.get("seq") == seq)


async def test_a_resent_event_is_stored_once_and_answered_with_its_first_seq(
        db_url: str) -> None:
    with trio.fail_after(20):
        async with chat_world(db_url) as world:
            lesson = await world.live_class("teacher", "ann")
            rid = lesson.room.id
            async with world.joined(rid, *lesson.people) as (t, a):
                data = {"room_id": rid, "text": "only once"}
                first = await a.call("message", data, id="ann-1")
                again = await a.call("message", data, id="ann-1")
                assert first["event"] == again["event"] == "ack", (first, again)
                assert again["data"]["seq"] == first["data"]["seq"]
                other = await a.call("message", data, id="ann-2")
                assert other["data"]["seq"] == first["data"]["seq"] + 1
                await t.sync()
                assert [f["seq"] for f in t.seen("message")] == [first["data"]["seq"],
                                                                 other["data"]["seq"]]
                events = await world.services.storage.list_room_events(rid, after=0)
                assert [e.data.count("only once") for e in events] == [1, 1]
            # The id is the sender's: another user may use the same one.
            async with world.connect(lesson.teacher) as t2:
                await t2.join(rid)
                mine = await t2.call("message", {"room_id": rid, "text": "t"}, id="ann-1")
                assert mine["data"]["seq"] == other["data"]["seq"] + 1


async def test_a_resend_after_reconnecting_to_another_server_is_not_stored_again(
        two_chat_servers: list[ChatWorld]) -> None:
    one, two = two_chat_servers
    with trio.fail_after(20):
        lesson = await one.live_class("teacher", "ann")
        rid = lesson.room.id
        async with one.connect(lesson.teacher) as t:
            await t.join(rid)
            async with one.connect(lesson.students[0]) as a:
                await a.join(rid)
                first = await a.call("signal", {"room_id": rid, "value": "HELP"}, id="s-1")
            # The ack was lost with the connection, say: the client resends elsewhere.
            async with two.connect(lesson.students[0]) as a2:
                await a2.join(rid)
                again = await a2.call("signal", {"room_id": rid, "value": "HELP"}, id="s-1")
            assert again["event"] == "ack" and again["data"]["seq"] == first["data"]["seq"]
            assert await one.last_seq(rid) == first["data"]["seq"]
            await t.sync()
            assert [f["seq"] for f in t.seen("signal")] == [first["data"]["seq"]]


async def test_a_bad_client_id_is_refused_and_nothing_stored(db_url: str) -> None:
    with trio.fail_after(20):
        async with chat_world(db_url) as world:
            lesson = await world.live_class("teacher")
            rid = lesson.room.id
            async with world.joined(rid, lesson.teacher) as (t,):
                for bad in ["", "x" * 65, "with space", "ü"]:
                    answer = await t.call("message", {"room_id": rid, "text": "no"}, id=bad)
                    assert answer["event"] == "error", answer
                    assert answer["data"]["code"] == "bad_frame"
                assert await world.last_seq(rid) == 0
