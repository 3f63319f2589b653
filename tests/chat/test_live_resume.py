"""Resume by seq: a client that comes back with the last seq it saw gets what it missed, then
live events, with nothing lost and nothing twice, even while the room is busy."""

from __future__ import annotations

import trio

from chat.hub import REPLAY_PAGE
from tests.chat.harness import UNLIMITED, ChatWorld, Frame, Person, chat_world


def message_seqs(frames: list[Frame]) -> list[int]:
    return [f["seq"] for f in frames if f["event"] == "message"]


async def test_rejoin_gets_exactly_what_was_missed_then_live(db_url: str) -> None:
    with trio.fail_after(20):
        async with chat_world(db_url, event_rates=UNLIMITED) as world:
            lesson = await world.live_class("teacher", "ann")
            teacher, ann = lesson.people
            room = lesson.room
            async with world.connect(teacher) as t:
                await t.join(room.id)
                async with world.connect(ann) as a:
                    await a.join(room.id)
                    for i in range(3):
                        await t.request("message", {"room_id": room.id, "text": f"before {i}"})
                    await a.have(lambda f: f["data"].get("text") == "before 2")
                    n = max(message_seqs(a.log))
                    assert n == 3
                for i in range(100):
                    await t.request("message", {"room_id": room.id, "text": f"missed {i}"})
                async with world.connect(ann) as a:
                    answer = await a.join(room.id, after=n, event="room/rejoin")
                    assert answer["data"]["room"]["last_seq"] == n + 100
                    replayed = [await a.expect("message") for _ in range(100)]
                    assert [f["seq"] for f in replayed] == list(range(n + 1, n + 101))
                    assert [f["data"]["text"] for f in replayed] == [
                        f"missed {i}" for i in range(100)]
                    await t.request("message", {"room_id": room.id, "text": "live"})
                    live = await a.expect("message")
                    assert live["seq"] == n + 101 and live["data"]["text"] == "live"
                    assert message_seqs(await a.sync()) == []


async def test_rejoin_racing_live_traffic_loses_and_repeats_nothing(db_url: str) -> None:
    with trio.fail_after(30):
        async with chat_world(db_url, event_rates=UNLIMITED) as world:
            lesson = await world.live_class("teacher", "ann", "bob")
            teacher, ann, bob = lesson.people
            rid = lesson.room.id
            # More history than one replay page, stored before anyone connects.
            history = REPLAY_PAGE + 100
            for i in range(history):
                text = "old done" if i == history - 1 else f"old {i}"
                await world.services.rooms.append(rid, "message", teacher.user, None,
                                                  {"text": text})
            n = 1  # what ann saw before she dropped
            async with world.connect(bob) as b:
                await b.join(rid, after=history)
                last_sent = trio.Event()
                total = 200

                async def chatter() -> None:  # sends only: the test's main task reads b
                    for i in range(total):
                        await b.send("message", {"room_id": rid, "text": f"live {i}"})
                        if i % 10 == 0:
                            await trio.lowlevel.checkpoint()
                    await b.send("message", {"room_id": rid, "text": "live done"})
                    last_sent.set()

                async with trio.open_nursery() as nursery, world.connect(ann) as a:
                    nursery.start_soon(chatter)
                    await b.have(lambda f: f["data"].get("text") == "live 20")
                    await a.join(rid, after=n, event="room/rejoin")
                    await a.have(lambda f: f["data"].get("text") == "live done")
                    await last_sent.wait()
                    await a.sync()
                    last = await world.last_seq(rid)
                    seqs = message_seqs(a.log)
                    expected = list(range(n + 1, last + 1))
                    first_wrong = next((i for i, (x, y) in enumerate(zip(seqs, expected,
                                                                          strict=False))
                                        if x != y), None)
                    assert seqs == expected, (
                        f"missing {sorted(set(expected) - set(seqs))[:10]}, "
                        f"{len(seqs) - len(set(seqs))} duplicates, first out of place at "
                        f"{first_wrong}: {seqs[first_wrong or 0:(first_wrong or 0) + 5]}")
                    texts = [f["data"]["text"] for f in a.log if f["event"] == "message"]
                    assert texts[-1] == "live done"
                    assert texts.index("live 0") > texts.index("old done")


async def test_join_again_on_the_same_connection(db_url: str) -> None:
    """A client alone in a room joins it again (a page that re-joins after a hiccup): the
    room goes on working for it."""
    with trio.fail_after(10):
        async with chat_world(db_url, event_rates=UNLIMITED) as world:
            lesson = await world.live_class("teacher", "ann")
            teacher, ann = lesson.people
            room = lesson.room
            async with world.connect(teacher) as t:
                await t.join(room.id)
                await t.request("message", {"room_id": room.id, "text": "one"})
                await t.join(room.id, after=1, event="room/rehost")
                await t.request("message", {"room_id": room.id, "text": "two"})
                async with world.connect(ann) as a:
                    await a.join(room.id)
                    await a.request("message", {"room_id": room.id, "text": "three"})
                    await t.have(lambda f: f["data"].get("text") == "three")
                    assert message_seqs(await a.sync() + a.log) == [1, 2, 3]


async def still_connected(world: ChatWorld, teacher: Person, room_id: int,
                          who: Person) -> int:
    _, records = await world.services.rooms.attendance(teacher.user, room_id)
    return sum(r.open_connections for r in records if r.user.id == who.id)


async def test_sender_hanging_up_mid_event_loses_nothing_for_others(db_url: str) -> None:
    """Every event that was stored reaches the members live, even when its sender's
    connection ends while the server is storing it (a tab closed right after sending)."""
    with trio.fail_after(20):
        async with chat_world(db_url, event_rates=UNLIMITED) as world:
            lesson = await world.live_class("teacher", "ann")
            teacher, ann = lesson.people
            rid = lesson.room.id
            async with world.connect(teacher) as t:
                await t.join(rid)
                for attempt in range(15):
                    async with world.connect(ann) as a:
                        await a.join(rid)
                        for i in range(5):
                            await a.send("message", {"room_id": rid, "text": f"{attempt}.{i}"})
                        await trio.sleep(0.001 * attempt)
                    # The server has noticed: ann left. (Her presence may not show: a join
                    # and a leave within one presence interval cancel out.)
                    while True:
                        if not await still_connected(world, teacher, rid, ann):
                            break
                        await trio.sleep(0.01)
                    await t.sync()
                stored = await world.services.storage.list_events(rid, teacher.id, limit=1000)
                expected = [e.seq for e in stored if e.event == "message"]
                got = message_seqs(t.log)
                assert got == expected, f"stored, never sent: {sorted(set(expected) - set(got))}"
