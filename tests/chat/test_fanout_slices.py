"""A huge room does not block the event loop: fanning one event out to 10,000 members lets
other tasks run every few hundred members (no clock involved: the other task counts how many
members were served between two of its turns)."""

from __future__ import annotations

import itertools
import json
import socket
from datetime import datetime

import trio
import trio.testing

from chat.client import Client, Joined
from chat.fanout import FANOUT_RUN_BYTES, FANOUT_SLICE, FanOut, LiveRoom
from chat.outbox import Outbox
from chat.turns import holding
from classroom.rooms import RoomAccess
from classroom.rules import Role
from storage import Classroom, Room, RoomEvent, User

T0 = datetime(2026, 3, 2, 9, 0, 0)
MEMBERS = 10_000


def lecture() -> LiveRoom:
    room = Room(id=1, classroom_id=1, kind="live", topic="", created_by=1, created_at=T0,
                ended_at=None, chat_server=None, last_seq=0)
    classroom = Classroom(id=1, name="Big", description="", join_code="x", instructor_id=1,
                          instructor_name="T", created_at=T0)
    live = LiveRoom(room=room, instructor_id=1, last_seq=0)
    access = RoomAccess(room=room, classroom=classroom, role=Role.STUDENT)
    for uid in range(1, MEMBERS + 1):
        user = User(id=uid, username=f"u{uid}", display_name=f"U{uid}", created_at=T0)
        client = Client(user=user, outbox=Outbox())  # no socket: frames stay queued
        client.rooms[room.id] = Joined(access=access)
        live.add(client)
    return live


def member(live: LiveRoom, uid: int) -> Client:
    user = User(id=uid, username=f"u{uid}", display_name=f"U{uid}", created_at=T0)
    client = Client(user=user, outbox=Outbox())
    classroom = Classroom(id=1, name="Small", description="", join_code="y",
                          instructor_id=1, instructor_name="T", created_at=T0)
    client.rooms[live.id] = Joined(access=RoomAccess(room=live.room, classroom=classroom,
                                                     role=Role.STUDENT))
    return client


async def test_the_next_event_reaches_exactly_who_is_in_the_room_after_joins_and_leaves(
        ) -> None:
    # The room keeps one list of its connections between changes; every change must show
    # in the next fan-out.
    live = LiveRoom(room=lecture().room, instructor_id=1, last_seq=0)
    ann, ann_phone, bob = member(live, 2), member(live, 2), member(live, 3)
    assert live.add(ann) is True
    assert live.add(ann_phone) is False  # ann's second connection
    event = RoomEvent(room_id=1, seq=1, event="message", sender_id=1, recipient_id=None,
                      data='{"text":"hello"}', created_at=T0)
    with trio.fail_after(5):
        await live.deliver_event(event)
        assert [len(c.outbox) for c in (ann, ann_phone, bob)] == [1, 1, 0]
        assert live.add(bob) is True
        await live.deliver_event(event)
        assert [len(c.outbox) for c in (ann, ann_phone, bob)] == [2, 2, 1]
        assert live.remove(ann) is False  # her phone is still here
        await live.deliver_event(event)
        assert [len(c.outbox) for c in (ann, ann_phone, bob)] == [2, 3, 2]
        assert live.remove(ann_phone) is True
        assert live.remove(ann_phone) is False  # gone already
        await live.deliver_event(event)
        assert [len(c.outbox) for c in (ann, ann_phone, bob)] == [2, 3, 3]
    assert set(live.by_user) == {3}


async def served_at_each_step_of_another_task(live: LiveRoom) -> list[int]:
    """Fan one event out to the room while another task, at each of its steps, counts the
    members served so far; those counts."""
    clients = live.clients()
    event = RoomEvent(room_id=1, seq=1, event="message", sender_id=1, recipient_id=None,
                      data='{"text":"hello"}', created_at=T0)
    served: list[int] = []
    done = trio.Event()

    async def other_client() -> None:
        while not done.is_set():
            served.append(sum(1 for c in clients if len(c.outbox)))
            await trio.lowlevel.checkpoint()

    async def fan_out() -> None:
        await live.deliver_event(event)
        done.set()

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(other_client)
            nursery.start_soon(fan_out)
    assert all(len(c.outbox) == 1 for c in clients)
    return served


async def test_a_fan_out_to_ten_thousand_members_lets_other_tasks_run() -> None:
    served_at_turns = await served_at_each_step_of_another_task(lecture())
    gaps = [b - a for a, b in itertools.pairwise(served_at_turns)]
    # trio runs the two tasks in either order each round, so two slices may fall between
    # two turns of the other task; never the whole room.
    assert max(gaps, default=MEMBERS) <= 2 * FANOUT_SLICE, max(gaps, default=MEMBERS)


async def test_other_tasks_take_two_steps_between_two_pieces_of_a_fan_out() -> None:
    """Another client's event is a chain of steps, each run in the turn after the one that
    readied it: the fan-out gives up two turns after each piece, so such a chain goes two
    steps per piece, not one (its wait in a lecture's fan-out about halves)."""
    served = await served_at_each_step_of_another_task(lecture())
    during = [n for n in served if 0 < n < MEMBERS]
    pieces = len(set(during))
    assert pieces >= 10, pieces  # a fan-out of 10,000 is many pieces
    assert len(during) >= 2 * pieces - 1, (len(during), pieces)


async def test_a_free_room_lock_is_taken_without_a_turn_a_held_one_is_waited_for() -> None:
    """Every event a room sends takes its lock: when it is free that costs no turn of the
    scheduler (a turn on a busy server is every other task's step); when it is held the
    taker waits, and gets it once it is let go."""
    lock = trio.Lock()
    with trio.fail_after(5):
        with trio.testing.assert_no_checkpoints():
            async with holding(lock):
                assert lock.locked()
        assert not lock.locked()
        order: list[str] = []

        async def second() -> None:
            async with holding(lock):
                order.append("second")

        async with trio.open_nursery() as nursery, holding(lock):
            nursery.start_soon(second)
            await trio.testing.wait_all_tasks_blocked()
            order.append("first")
        assert order == ["first", "second"]


def stored(seq: int, text: str, *, to: int | None = None) -> RoomEvent:
    return RoomEvent(room_id=1, seq=seq, event="message", sender_id=1, recipient_id=to,
                     data=json.dumps({"text": text}), created_at=T0)


def seqs_in(data: bytes) -> list[int]:
    """The seqs of the server's text frames (unmasked, short or 16-bit lengths) in `data`."""
    seqs = []
    while data:
        assert data[0] == 0x81
        size, at = data[1], 2
        if size == 126:
            size, at = int.from_bytes(data[2:4], "big"), 4
        seqs.append(json.loads(data[at:at + size])["seq"])
        data = data[at + size:]
    return seqs


async def test_events_stored_while_a_fan_out_waits_go_out_together_in_order() -> None:
    live = LiveRoom(room=lecture().room, instructor_id=1, last_seq=0)
    ann, bob = member(live, 2), member(live, 3)
    live.add(ann)
    live.add(bob)
    writer, reader = socket.socketpair()
    with writer, reader:
        writer.setblocking(False)
        ann.outbox.attach(writer)  # bob's outbox has no socket: each write stays queued
        # Stored while the first event's sender waited for the room: 3 is private (ann's).
        for event in (stored(1, "one"), stored(2, "two"), stored(3, "psst", to=2),
                      stored(4, "four")):
            live.unsent[event.seq] = event
        with trio.fail_after(5):
            await FanOut(None, None)._send_in_order(live, 1)  # type: ignore[arg-type]
        assert live.last_seq == 4 and not live.unsent
        assert len(bob.outbox) == 2  # 1 and 2 in one write, 4 in the next; 3 is not his
        assert seqs_in(reader.recv(1 << 16)) == [1, 2, 3, 4]


async def test_a_run_of_waiting_events_stops_at_its_size_limit() -> None:
    live = LiveRoom(room=lecture().room, instructor_id=1, last_seq=0)
    bob = member(live, 3)
    live.add(bob)
    two_fit = "x" * (FANOUT_RUN_BYTES // 2 - 100)
    for seq in (1, 2, 3, 4):
        live.unsent[seq] = stored(seq, two_fit)
    with trio.fail_after(5):
        await FanOut(None, None)._send_in_order(live, 1)  # type: ignore[arg-type]
    # The first event's sender sends the run that fits (1 and 2) and stops there.
    assert live.last_seq == 2 and len(bob.outbox) == 1
    with trio.fail_after(5):
        await FanOut(None, None)._send_in_order(live, 4)  # type: ignore[arg-type]
    assert live.last_seq == 4 and len(bob.outbox) == 2
