"""A hosted room's memory of its latest events (chat/fanout.py Recent), which joiners'
history replay reads instead of the database: it answers only for a seq range it holds
whole, and a seq out of turn starts it over."""

from __future__ import annotations

from datetime import datetime

from chat.fanout import Recent
from storage import RoomEvent

T0 = datetime(2026, 3, 2, 9, 0, 0)


def event(seq: int) -> RoomEvent:
    return RoomEvent(room_id=1, seq=seq, event="message", sender_id=1, recipient_id=None,
                     data="{}", created_at=T0)


def seqs(held: list[tuple[RoomEvent, bytes]] | None) -> list[int] | None:
    return None if held is None else [e.seq for e, _ in held]


def test_answers_only_for_a_range_it_holds_whole() -> None:
    recent = Recent(first=4)  # the room was loaded at seq 3
    for seq in range(4, 9):
        recent.add(event(seq), f"frame {seq}".encode())
    assert seqs(recent.between(3, 8)) == [4, 5, 6, 7, 8]
    assert seqs(recent.between(5, 7)) == [6, 7]
    assert recent.between(5, 7) is not None
    assert [f for _, f in recent.between(6, 7) or []] == [b"frame 7"]
    assert recent.between(8, 8) == []
    assert recent.between(2, 8) is None  # seq 3 is only in the database
    assert recent.between(0, 8) is None
    assert recent.between(3, 9) is None  # not sent yet


def test_keeps_the_latest_limit_events() -> None:
    recent = Recent(first=1, limit=3)
    for seq in range(1, 6):
        recent.add(event(seq), b"")
    assert seqs(recent.between(2, 5)) == [3, 4, 5]
    assert recent.between(1, 5) is None


def test_a_seq_out_of_turn_starts_it_over() -> None:
    recent = Recent(first=1)
    for seq in (1, 2, 5, 6):  # 3 and 4 skipped (another process's, not relayed)
        recent.add(event(seq), b"")
    assert recent.between(2, 6) is None
    assert recent.between(0, 6) is None
    assert seqs(recent.between(4, 6)) == [5, 6]
