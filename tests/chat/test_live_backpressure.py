"""Backpressure: one member that stops reading is closed with 1013 and resumes by seq later;
the rest of a 30-member room keeps getting every message promptly."""

from __future__ import annotations

import trio

from tests.chat.harness import (
    UNLIMITED,
    ChatWorld,
    Peer,
    Person,
    chat_world,
    presence_changes,
    presence_view,
)

MEMBERS = 30
MESSAGES = 200
TEXT = "x" * 2000  # 200 of these are far more than the stalled client's socket buffers hold


def seqs_of(peer: Peer) -> list[int]:
    return [f["seq"] for f in peer.log if f["event"] == "message"]


async def test_slow_consumer_is_dropped_and_resumes_others_unharmed(db_url: str) -> None:
    with trio.fail_after(30):
        # Small outboxes, so the stalled client overflows after a few dozen frames.
        async with chat_world(db_url, event_rates=UNLIMITED, outbox_frames=40,
                              outbox_bytes=256 * 1024) as world:
            teacher = await world.person("teacher")
            students = [await world.person(f"student{i:02}") for i in range(MEMBERS - 1)]
            classroom = await world.classroom(teacher, *students)
            room = await world.live_room(teacher, classroom)
            rid = room.id
            slow_person, readers = students[0], students[1:]
            done_at: dict[int, float] = {}
            all_done = trio.Event()
            last = f"{MESSAGES - 1}:"

            async def read_all(peer: Peer, key: int) -> None:
                await peer.have(lambda f: f["data"].get("text", "").startswith(last))
                done_at[key] = trio.current_time()
                if len(done_at) == MEMBERS - 1:
                    all_done.set()

            async with world.connect(teacher) as t, world.connect_stalled(slow_person) as slow:
                await t.join(rid)
                await slow.join(rid)
                await slow.sync()
                async with trio.open_nursery() as nursery:
                    peers: list[Peer] = []
                    for student in readers:
                        peers.append(await nursery.start(_reader, world, student, rid))
                    for i, peer in enumerate([t, *peers]):
                        nursery.start_soon(read_all, peer, i)
                    began = trio.current_time()
                    for i in range(MESSAGES):
                        await t.send("message", {"room_id": rid, "text": f"{i}:{TEXT}"})
                    with trio.fail_after(10):
                        await all_done.wait()
                    took = max(done_at.values()) - began
                    assert took < 8, f"the room waited for its slowest member: {took:.1f} s"
                    for peer in [t, *peers]:
                        seqs = seqs_of(peer)
                        assert seqs[-MESSAGES:] == list(range(1, MESSAGES + 1))
                    # Everyone else sees the stalled member gone (the instructor, who may
                    # have had its arrival and departure in one presence batch, never saw
                    # it come).
                    for peer in [t, *peers]:
                        while presence_view(peer.log).get(slow_person.id):
                            await peer.receive()
                    assert all(presence_changes(p.log, slow_person.id) == [False]
                               for p in peers)
                    nursery.cancel_scope.cancel()

                # The stalled client reads again: what made it out, then the close frame.
                code = await slow.closed()
                assert code == 1013, code
                got = seqs_of(slow)
                assert got == list(range(1, len(got) + 1))
                assert len(got) < MESSAGES
                seen = got[-1] if got else 0

            async with world.connect(slow_person) as again:
                await again.join(rid, after=seen, event="room/rejoin")
                await again.sync()
                assert seqs_of(again) == list(range(seen + 1, MESSAGES + 1))


async def _reader(world: ChatWorld, student: Person, room_id: int,
                  task_status: trio.TaskStatus[Peer] = trio.TASK_STATUS_IGNORED) -> None:
    """Connect and join, hand the peer over, then keep the connection open until cancelled."""
    async with world.connect(student) as peer:
        await peer.join(room_id)
        await peer.sync()
        task_status.started(peer)
        await trio.sleep_forever()
