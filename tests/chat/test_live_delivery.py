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
                    # Refused: nothing stored, the room's seq unchanged, nobody told.
                    assert answer["data"]["code"] == "unavailable", answer
                    assert stored == [], "stored but never delivered"
                    assert await world.last_seq(rid) == before
                    assert told == []
                # The room goes on: a later event gets the next seq and reaches everyone.
                seq = await a.say(rid, "still here")
                assert seq == before + len(stored) + 1
                await t.have(lambda f: f.get("seq") == seq)
