"""Live events are rate-limited per user and room (a burst, then a steady rate; more for the
instructor): over it, `error` `rate_limited` with `retry_after` and nothing stored; a client
that keeps hammering is disconnected (1008). A person's stored bytes per room are capped."""

from __future__ import annotations

import contextlib
import json

import trio
from trio_websocket import ConnectionClosed

from chat.flood import CLOSE_POLICY_VIOLATION
from classroom.ratelimit import EVENT_RATES
from classroom.rules import Role
from tests.chat.harness import Frame, Peer, chat_world

STUDENT = EVENT_RATES[Role.STUDENT]
INSTRUCTOR = EVENT_RATES[Role.INSTRUCTOR]


async def burst_of(peer: Peer, room_id: int, count: int) -> tuple[list[Frame], float]:
    """Send `count` messages without waiting, then read every answer: (answers, seconds
    until the last answer, for the refill the server may have allowed meanwhile)."""
    started = trio.current_time()
    refs = [await peer.send("message", {"room_id": room_id, "text": f"m{i}"})
            for i in range(count)]
    answers = [await peer.answer(ref) for ref in refs]
    return answers, trio.current_time() - started


async def test_over_the_rate_is_refused_with_a_hint_and_nothing_stored(db_url: str) -> None:
    with trio.fail_after(20):
        async with chat_world(db_url) as world:
            lesson = await world.live_class("teacher", "ann", "bob")
            teacher, ann, bob = lesson.people
            rid = lesson.room.id
            async with world.joined(rid, teacher, ann, bob) as (t, a, b):
                answers, elapsed = await burst_of(a, rid, int(STUDENT.burst) + 10)
                acks = [x for x in answers if x["event"] == "ack"]
                refused = [x for x in answers if x["event"] == "error"]
                assert len(acks) >= STUDENT.burst
                assert len(acks) <= STUDENT.burst + STUDENT.per_second * (elapsed + 1)
                assert refused and {x["data"]["code"] for x in refused} == {"rate_limited"}
                hint = refused[0]["data"]["retry_after"]
                assert 0 < hint <= 1 / STUDENT.per_second + 0.1
                assert await world.last_seq(rid) == len(acks)  # refused ones: not stored
                # Others in the room are not held back by ann's bucket...
                await b.say(rid, "bob is fine")
                # ...and ann may go on after the hint.
                await trio.sleep(hint)
                await a.say(rid, "after waiting")
                # The instructor's burst is larger.
                answers, elapsed = await burst_of(t, rid, int(INSTRUCTOR.burst) + 20)
                acks = [x for x in answers if x["event"] == "ack"]
                assert INSTRUCTOR.burst <= len(acks)
                assert len(acks) <= INSTRUCTOR.burst + INSTRUCTOR.per_second * (elapsed + 1)


async def test_a_client_that_keeps_hammering_is_disconnected(db_url: str) -> None:
    with trio.fail_after(20):
        async with chat_world(db_url) as world:
            lesson = await world.live_class("teacher", "mallory")
            teacher, mallory = lesson.people
            rid = lesson.room.id
            async with world.joined(rid, teacher, mallory) as (t, m):
                started = trio.current_time()
                frame = json.dumps({"event": "message",
                                    "data": {"room_id": rid, "text": "x" * 4000}})
                sent = 0
                with contextlib.suppress(ConnectionClosed):
                    while sent < 3000:  # the attack that used to store them all
                        await m.send_raw(frame)
                        sent += 1
                assert await m.closed() == CLOSE_POLICY_VIOLATION
                elapsed = trio.current_time() - started
                stored = await world.last_seq(rid)
                assert stored <= STUDENT.burst + STUDENT.per_second * (elapsed + 1), (
                    stored, sent, elapsed)
                await t.say(rid, "the room carries on")


async def test_stored_bytes_per_person_per_room_are_capped(db_url: str) -> None:
    with trio.fail_after(20):
        async with chat_world(db_url) as world:
            lesson = await world.live_class("teacher", "ann")
            teacher, ann = lesson.people
            rid = lesson.room.id
            other = await world.services.rooms.open(teacher.user, lesson.classroom.id,
                                                    "discussion", "groups")
            world.services.rooms.stored_bytes.limit = 20_000
            async with world.joined(rid, teacher, ann) as (t, a):
                for _ in range(4):
                    await a.say(rid, "y" * 4000)
                before = await world.last_seq(rid)
                answer = await a.call("message", {"room_id": rid, "text": "y" * 4000})
                assert answer["event"] == "error", answer
                assert answer["data"]["code"] == "quota_exceeded"
                assert "per session" in answer["data"]["message"]
                assert await world.last_seq(rid) == before
                await t.say(rid, "the instructor has their own share")
            async with world.joined(other.id, ann) as (a2,):
                await a2.say(other.id, "another room, another share")


async def test_shared_code_has_a_budget_apart_from_messages(db_url: str) -> None:
    # A lab stores each changed file whole on every save: an active editor must not lose
    # the chat (asking for help) to it, nor a chatty student the sharing.
    with trio.fail_after(20):
        async with chat_world(db_url) as world:
            lesson = await world.live_class("teacher", "ann")
            teacher, ann = lesson.people
            rid = lesson.room.id
            quota = world.services.rooms.stored_bytes
            quota.limit, quota.code_limit = 12_000, 20_000
            code = [{"filename": "a.py", "status": "changed", "content": "z" * 4000}]
            async with world.joined(rid, teacher, ann) as (t, a):
                await t.request("sharing/start", {"room_id": rid})
                for _ in range(2):
                    await a.say(rid, "y" * 4000)
                refused = await a.call("message", {"room_id": rid, "text": "y" * 4000})
                assert refused["data"]["code"] == "quota_exceeded", refused
                for _ in range(4):  # the messages spent nothing of the code budget
                    await a.request("sharing/code_update", {"room_id": rid, "files": code})
                before = await world.last_seq(rid)
                refused = await a.call("sharing/code_update", {"room_id": rid, "files": code})
                assert refused["event"] == "error", refused
                assert refused["data"]["code"] == "quota_exceeded"
                assert "shared code" in refused["data"]["message"]
                assert await world.last_seq(rid) == before
                await a.say(rid, "short")  # what is left of the message budget still works
