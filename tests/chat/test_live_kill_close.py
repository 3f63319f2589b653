"""room/kill (the instructor removes a student) and room/close (the session ends)."""

from __future__ import annotations

import trio

from tests.chat.harness import Peer, chat_world, presence_changes, presence_view


def presence_of(peer: Peer, user_id: int) -> list[bool]:
    return presence_changes(peer.log, user_id)


async def test_kill_removes_the_student_until_the_session_ends(db_url: str) -> None:
    with trio.fail_after(15):
        async with chat_world(db_url) as world:
            lesson = await world.live_class("teacher", "ann", "bob")
            teacher, ann, bob = lesson.people
            rid = lesson.room.id
            async with world.joined(rid, teacher, ann, ann, bob) as (t, a1, a2, b):
                await t.request("message", {"room_id": rid, "text": "welcome"})

                await t.request("room/kill", {"room_id": rid, "user_id": ann.id})
                for tab in (a1, a2):  # every tab of the student
                    kill = await tab.have(lambda f: f["event"] == "room/kill")
                    assert kill["data"]["room_id"] == rid
                    assert kill["data"]["user_id"] == ann.id
                # (bob's join answer listed her online; the instructor may have had her
                # arrival and removal in one presence batch, which then says nothing.)
                for peer in (t, b):
                    while presence_view(peer.log).get(ann.id):
                        await peer.receive()
                assert presence_of(b, ann.id)[-1] is False

                # Gone from the room: its events no longer reach them...
                await t.request("message", {"room_id": rid, "text": "after the kick"})
                await b.have(lambda f: f["data"].get("text") == "after the kick")
                for tab in (a1, a2):
                    after = await tab.sync()
                    assert not [f for f in after if "seq" in f or f["event"] == "presence"]
                # ...they cannot send to it or come back, on this connection or a new one...
                assert await a1.refused("message", {"room_id": rid, "text": "hey"}) == "not_found"
                assert await a1.refused("room/join", {"room_id": rid}) == "forbidden"
                assert await a2.refused("room/rejoin", {"room_id": rid, "after": 0}) == "forbidden"
                async with world.connect(ann) as a3:
                    assert await a3.refused("room/join", {"room_id": rid}) == "forbidden"
                # ...and everyone sees them offline.
                async with world.connect(teacher) as t2:
                    answer = await t2.join(rid)
                    members = {m["id"]: m for m in answer["data"]["members"]}
                    assert members[ann.id]["online"] is False
                    assert members[bob.id]["online"] is True
                _, records = await world.services.rooms.attendance(teacher.user, rid)
                assert {r.user.id: r.open_connections for r in records}[ann.id] == 0
                # The instructor cannot be removed; another class's user is not found.
                assert await b.refused("room/kill", {"room_id": rid, "user_id": bob.id}) == (
                    "forbidden")
                assert await t.refused("room/kill", {"room_id": rid, "user_id": 999}) == (
                    "not_found")

                await t.request("room/close", {"room_id": rid})
                # Once the session is over its history is readable again, read-only.
                answer = await a1.join(rid, after=0)
                assert answer["data"]["room"]["open"] is False
                history = await a1.sync()
                assert [f["data"].get("text") for f in history if f["event"] == "message"] == [
                    "welcome", "after the kick"]
                assert await a1.refused("message", {"room_id": rid, "text": "x"}) == "invalid"


async def test_close_ends_the_room_for_everyone(db_url: str) -> None:
    with trio.fail_after(15):
        async with chat_world(db_url) as world:
            lesson = await world.live_class("teacher", "ann", "bob")
            teacher, ann, bob = lesson.people
            classroom, rid = lesson.classroom, lesson.room.id
            async with world.joined(rid, teacher, ann, bob) as (t, a, b):
                await a.request("message", {"room_id": rid, "text": "bye"})
                await a.request("message/to_mentor", {"room_id": rid, "text": "thanks"})
                assert await a.refused("room/close", {"room_id": rid}) == "forbidden"

                await t.request("room/close", {"room_id": rid})
                closed_seq = await world.last_seq(rid)
                for peer in (t, a, b):
                    closed = await peer.have(lambda f: f["event"] == "room/closed")
                    assert closed["seq"] == closed_seq == 3
                    assert closed["data"]["room_id"] == rid
                assert (await world.room(rid)).ended_at is not None
                assert await world.services.rooms.current_session(classroom.id) is None

                # No more events in it, whatever the client tries.
                assert await a.refused("message", {"room_id": rid, "text": "late"}) in (
                    "not_found", "invalid")
                answer = await b.join(rid, after=0)
                assert answer["data"]["room"]["open"] is False
                history = await b.sync()
                assert [(f["event"], f["seq"]) for f in history if "seq" in f] == [
                    ("message", 1), ("room/closed", 3)]
                assert await b.refused("message", {"room_id": rid, "text": "late"}) == "invalid"
                assert await b.refused("signal", {"room_id": rid, "value": "HELP"}) == "invalid"
                await t.join(rid)
                assert await t.refused("room/close", {"room_id": rid}) == "invalid"
                assert await t.refused("exercise", {"room_id": rid, "content": "x"}) == "invalid"
                assert await world.last_seq(rid) == closed_seq
                # The private history stays private.
                got = await t.request("message/user", {"room_id": rid, "user_id": ann.id},
                                      answer="message/user")
                assert [m["data"]["text"] for m in got["data"]["messages"]] == ["thanks"]
                # A new session can start.
                made = await t.request("room/create", {"classroom_id": classroom.id,
                                                       "kind": "live"}, answer="room/update")
                assert made["data"]["room"]["open"] is True


async def test_session_ended_elsewhere_takes_no_more_events(db_url: str) -> None:
    """The instructor ends the session from the web page (Rooms.end, as POST
    /api/v1/sessions/{id}/end does) while members are connected to this chat server."""
    with trio.fail_after(10):
        async with chat_world(db_url) as world:
            lesson = await world.live_class("teacher", "ann")
            teacher, ann = lesson.people
            room = lesson.room
            async with world.joined(room.id, teacher, ann) as (t, a):
                await a.request("message", {"room_id": room.id, "text": "before"})
                await world.services.rooms.end(teacher.user, room.id)
                ended = await world.last_seq(room.id)
                # Every member is told within the chat server's sync interval, by the stored
                # room/closed event (seq'd, so a resuming client gets it too).
                for peer in (t, a):
                    closed = await peer.have(lambda f: f["event"] == "room/closed")
                    assert closed["seq"] == ended
                await a.call("message", {"room_id": room.id, "text": "after"})
                await a.call("signal", {"room_id": room.id, "value": "HELP"})
                assert await world.last_seq(room.id) == ended


async def test_events_stored_by_another_process_reach_members(db_url: str) -> None:
    """Another process (an app server, a second chat server) stores an event in a room this
    server hosts: members get it, in its audience only, within the sync interval."""
    with trio.fail_after(10):
        async with chat_world(db_url) as world:
            lesson = await world.live_class("teacher", "ann", "bob")
            teacher, ann, bob = lesson.people
            room = lesson.room
            async with world.joined(room.id, teacher, ann, bob) as (t, a, b):
                rooms = world.services.rooms
                public = await rooms.append(room.id, "message", teacher.user, None,
                                            {"text": "from elsewhere"})
                private = await rooms.append(room.id, "message/to_client", teacher.user,
                                             ann.id, {"user_id": ann.id, "text": "psst"})
                for peer in (t, a, b):
                    got = await peer.have(lambda f: f.get("seq") == public.seq)
                    assert got["data"]["text"] == "from elsewhere"
                await a.have(lambda f: f.get("seq") == private.seq)
                await t.have(lambda f: f.get("seq") == private.seq)
                await t.request("message", {"room_id": room.id, "text": "local"})
                await b.have(lambda f: f["data"].get("text") == "local")
                await b.sync()
                assert private.seq not in [f.get("seq") for f in b.log]


async def test_a_local_event_never_overtakes_one_stored_elsewhere(db_url: str) -> None:
    """Another process stored seq N; this server's next event gets N+1. Members must get N
    first, at once, not after the next sync round."""
    with trio.fail_after(10):
        async with chat_world(db_url) as world:
            lesson = await world.live_class("teacher", "ann")
            teacher, ann = lesson.people
            room = lesson.room
            async with world.joined(room.id, teacher, ann) as (t, a):
                elsewhere = await world.services.rooms.append(room.id, "message", teacher.user,
                                                              None, {"text": "elsewhere"})
                with trio.fail_after(1):  # well inside the 2 s sync interval
                    await t.request("message", {"room_id": room.id, "text": "here"})
                    here = await a.have(lambda f: f["data"].get("text") == "here")
                seqs = [f["seq"] for f in a.log if f["event"] == "message"]
                assert seqs == [elsewhere.seq, here["seq"]] == [elsewhere.seq, elsewhere.seq + 1]
