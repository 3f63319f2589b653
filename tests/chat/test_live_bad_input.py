"""Bad input gets an `error` event (with the client's ref when it could be read), the
connection keeps working, and nothing is stored."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import trio
from trio_websocket import ConnectionClosed

from tests.chat.harness import UNLIMITED, ChatWorld, Peer, chat_world

MIB: Final = 1024 * 1024

# (what is wrong, the raw frame or an {event, data} to send with ref 7, the error code)
BAD: Final[list[tuple[str, Any, str]]] = [
    ("not JSON", "{event: message", "bad_frame"),
    ("binary frame", b'{"event": "message", "data": {}}', "bad_frame"),
    ("a JSON array", '[{"event": "message"}]', "bad_frame"),
    ("a JSON string", '"message"', "bad_frame"),
    ("event missing", '{"data": {}, "ref": 7}', "bad_frame"),
    ("event not a string", '{"event": 5, "ref": 7}', "bad_frame"),
    ("data not an object", '{"event": "message", "data": [1], "ref": 7}', "bad_frame"),
    ("ref not a number", '{"event": "message", "data": {}, "ref": "x"}', "bad_frame"),
    ("an extra key", '{"event": "message", "data": {}, "ref": 7, "room": 1}', "bad_frame"),
    ("malformed event name", '{"event": "Message!", "ref": 7}', "bad_event"),
    ("unknown event", {"event": "message/everyone"}, "invalid"),
    ("room_id missing", {"event": "message", "data": {"text": "hi"}}, "invalid"),
    ("room_id a string", {"event": "message", "data": {"room_id": "R", "text": "hi"}},
     "invalid"),
    ("room_id negative", {"event": "message", "data": {"room_id": -1, "text": "hi"}},
     "invalid"),
    ("room_id a bool", {"event": "room/join", "data": {"room_id": True}}, "invalid"),
    ("text missing", {"event": "message", "data": {"room_id": "ROOM"}}, "invalid"),
    ("text a number", {"event": "message", "data": {"room_id": "ROOM", "text": 5}}, "invalid"),
    ("text blank", {"event": "message", "data": {"room_id": "ROOM", "text": "  "}}, "invalid"),
    ("text too long", {"event": "message", "data": {"room_id": "ROOM", "text": "a" * 4001}},
     "invalid"),
    ("text with a bidi override", {"event": "message",
                                   "data": {"room_id": "ROOM", "text": "abc\u202edef"}},
     "invalid"),
    ("a room you are not in", {"event": "message", "data": {"room_id": "OTHER", "text": "x"}},
     "not_found"),
    ("a room that does not exist", {"event": "room/join", "data": {"room_id": 99999}},
     "not_found"),
    ("after not a number", {"event": "room/join", "data": {"room_id": "ROOM", "after": "3"}},
     "invalid"),
    ("rejoin without after", {"event": "room/rejoin", "data": {"room_id": "ROOM"}},
     "invalid"),
    ("signal value unknown", {"event": "signal", "data": {"room_id": "ROOM", "value": "SOS"}},
     "forbidden"),  # the instructor sends it: the role is checked before the data
    ("steps not a list", {"event": "steps/all", "data": {"room_id": "ROOM", "steps": "x"}},
     "invalid"),
    ("step type a list", {"event": "steps/all", "data": {"room_id": "ROOM", "steps": [
        {"name": "a", "type": []}]}}, "invalid"),
    ("step type an object", {"event": "steps/all", "data": {"room_id": "ROOM", "steps": [
        {"name": "a", "type": {"x": 1}}]}}, "invalid"),
    ("step not an object", {"event": "steps/all", "data": {"room_id": "ROOM", "steps": [3]}},
     "invalid"),
    ("feedback accepted not a bool", {"event": "exercise/feedback", "data": {
        "room_id": "ROOM", "user_id": "ANN", "accepted": "yes"}}, "invalid"),
    ("feedback for the instructor", {"event": "exercise/feedback", "data": {
        "room_id": "ROOM", "user_id": "TEACHER", "accepted": True}}, "invalid"),
    ("private message to a stranger", {"event": "message/to_client", "data": {
        "room_id": "ROOM", "user_id": "STRANGER", "text": "hi"}}, "not_found"),
    ("step number too big", {"event": "steps/status/to_client", "data": {
        "room_id": "ROOM", "user_id": "ANN", "step": 100, "status": "ACCEPTED"}}, "invalid"),
    ("status a list", {"event": "steps/status/to_client", "data": {
        "room_id": "ROOM", "user_id": "ANN", "step": 0, "status": ["ACCEPTED"]}}, "invalid"),
    ("files not a list", {"event": "settings", "data": {"room_id": "ROOM",
                                                        "files_to_ignore": ["x"]}}, "invalid"),
    ("markdown without steps", {"event": "steps/import", "data": {"room_id": "ROOM",
                                                                  "markdown": "   "}},
     "invalid"),
    ("kind unknown", {"event": "room/create", "data": {"classroom_id": "CLASS",
                                                       "kind": "party"}}, "invalid"),
    ("kind not a string", {"event": "room/create", "data": {"classroom_id": "CLASS",
                                                            "kind": ["live"]}}, "invalid"),
    ("discussion without topic", {"event": "room/create", "data": {"classroom_id": "CLASS",
                                                                   "kind": "discussion"}},
     "invalid"),
    ("user_id a float", {"event": "message/user", "data": {"room_id": "ROOM",
                                                           "user_id": 2.5}}, "invalid"),
    # Ids past signed 64 bits name nothing: not_found on both backends (SQLite used to raise
    # OverflowError binding them, answered `internal`).
    ("room_id 2^63 in a join", {"event": "room/join", "data": {"room_id": 2**63}}, "not_found"),
    ("room_id 2^64 in a message", {"event": "message", "data": {"room_id": 2**64,
                                                                "text": "x"}}, "not_found"),
    ("classroom_id 2^63", {"event": "room/create", "data": {"classroom_id": 2**63}},
     "not_found"),
    ("user_id 2^63 in a private message", {"event": "message/to_client", "data": {
        "room_id": "ROOM", "user_id": 2**63, "text": "hi"}}, "not_found"),
    ("user_id 2^63 in a kill", {"event": "room/kill", "data": {"room_id": "ROOM",
                                                               "user_id": 2**63}}, "not_found"),
    ("user_id 10^30 in a conversation", {"event": "message/user", "data": {
        "room_id": "ROOM", "user_id": 10**30}}, "not_found"),
    ("user_id 2^63 in feedback", {"event": "exercise/feedback", "data": {
        "room_id": "ROOM", "user_id": 2**63, "accepted": True}}, "not_found"),
    ("user_id 2^63 in a step status", {"event": "steps/status/to_client", "data": {
        "room_id": "ROOM", "user_id": 2**63, "step": 0, "status": "ACCEPTED"}}, "not_found"),
    ("user_id -2^63", {"event": "room/kill", "data": {"room_id": "ROOM", "user_id": -2**63}},
     "invalid"),
    ("user_id a bool", {"event": "message/to_client", "data": {
        "room_id": "ROOM", "user_id": True, "text": "hi"}}, "invalid"),
    ("room_id -2^64", {"event": "room/join", "data": {"room_id": -2**64}}, "invalid"),
    ("after 2^63", {"event": "room/join", "data": {"room_id": "ROOM", "after": 2**63}},
     "invalid"),
    ("over 1 MiB, no ref", '{"event": "message", "data": {"text": "%s"}}' % ("a" * MIB),
     "too_large"),
    ("over 1 MiB", {"event": "message", "data": {"room_id": "ROOM", "text": "a" * (MIB + 10)}},
     "too_large"),
    ("over 1 MiB of UTF-8", {"event": "message", "data": {"room_id": "ROOM",
                                                          "text": "é" * (MIB // 2 + 10)}},
     "too_large"),
]



def resolve(value: Any, names: dict[str, int]) -> Any:
    if isinstance(value, str) and value in names:
        return names[value]
    if isinstance(value, dict):
        return {k: resolve(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, names) for v in value]
    return value


@asynccontextmanager
async def two_members(db_url: str) -> AsyncIterator[tuple[ChatWorld, Peer, Peer, dict[str, int]]]:
    """A room with the instructor and a student connected, and the ids BAD's names mean."""
    async with chat_world(db_url, event_rates=UNLIMITED) as world:
        lesson = await world.live_class("teacher", "ann")
        teacher, ann = lesson.people
        room = lesson.room
        stranger = await world.person("stranger")
        other = await world.classroom(stranger, name="Other")
        other_room = await world.live_room(stranger, other)
        names = {"ROOM": room.id, "OTHER": other_room.id, "ANN": ann.id,
                 "TEACHER": teacher.id, "STRANGER": stranger.id, "CLASS": lesson.classroom.id}
        async with world.joined(room.id, teacher, ann) as (t, a):
            await a.sync()
            yield world, t, a, names


async def refused_without_cost(world: ChatWorld, t: Peer, a: Peer, names: dict[str, int],
                               frame: Any, code: str) -> list[str]:
    """The instructor sends one bad frame: what went wrong (nothing, ideally)."""
    room_id = names["ROOM"]
    problems = []
    before = await world.last_seq(room_id)
    if isinstance(frame, dict):
        # (As UTF-8: escaped, "é" would be six characters, and the frame past the hard limit.)
        await t.send_raw(json.dumps({**resolve(frame, names), "ref": 7}, ensure_ascii=False))
    else:
        await t.send_raw(frame)
    answer = await t.expect("error")
    ref_readable = isinstance(frame, dict) or '"ref": 7' in str(frame)
    if answer["data"]["code"] != code or not answer["data"].get("message"):
        problems.append(f"answer {answer}, expected code {code}")
    if answer.get("ref") != (7 if ref_readable else None):
        problems.append(f"ref {answer.get('ref')} in {answer}")
    # Nothing stored, nobody told, and the connection carries on.
    if await world.last_seq(room_id) != before:
        problems.append("an event was stored")
    if told := await a.sync():
        problems.append(f"the student was told {told}")
    ack = await t.request("message", {"room_id": room_id, "text": "still fine"})
    got = await a.expect("message")
    if ack["data"]["seq"] != before + 1 or got["data"]["text"] != "still fine":
        problems.append(f"then a message: {ack}, {got}")
    return problems


async def test_bad_frames_are_refused_and_cost_nothing(db_url: str) -> None:
    """Every case of BAD in turn on one connection (which must survive them all)."""
    with trio.fail_after(20):
        async with two_members(db_url) as (world, t, a, names):
            wrong = []
            for what, frame, code in BAD:
                if problems := await refused_without_cost(world, t, a, names, frame, code):
                    wrong.append(f"{what}: {'; '.join(problems)}"[:400])
            assert not wrong, "\n".join(wrong)


async def test_frame_over_the_hard_limit_closes_only_that_connection(db_url: str) -> None:
    """A little past 1 MiB the WebSocket library closes the connection (1009), fragments
    held up to there at most: the server and the other connections carry on."""
    with trio.fail_after(10):
        async with chat_world(db_url, event_rates=UNLIMITED) as world:
            lesson = await world.live_class("teacher", "ann")
            room = lesson.room
            async with world.joined(room.id, *lesson.people) as (t, a):
                with contextlib.suppress(ConnectionClosed):  # closed while we still send
                    await a.send_raw(json.dumps({"event": "message", "data": {
                        "room_id": room.id, "text": "a" * (MIB + 100 * 1024)}}))
                assert await a.closed() == 1009
                await t.request("message", {"room_id": room.id, "text": "carry on"})
                assert await world.last_seq(room.id) == 1
