"""The per-person storage quota of a room (classroom/quota.py) against a real database (both
backends): totals read once per room, whoever sends first; counted here afterwards."""

from __future__ import annotations

from datetime import datetime

import pytest
import trio

from classroom.quota import CODE_EVENTS, QuotaExceeded, StoredBytes
from storage import Storage
from storage.stats import observe_statements

T0 = datetime(2026, 3, 4, 5, 6, 7)


async def test_a_rooms_totals_are_read_once_for_everyone_then_counted_here(
        storage: Storage) -> None:
    with trio.fail_after(10):
        teacher = await storage.create_user("t", "T", "h", T0)
        students = [await storage.create_user(f"s{i}", "S", "h", T0) for i in range(20)]
        classroom = await storage.create_classroom("c", "", "CODE1", teacher, T0)
        room = await storage.create_room(classroom.id, "live", "t", teacher.id, T0)
        await storage.append_event(room.id, "chat", students[0].id, None, "x" * 90, T0)
        await storage.append_event(room.id, CODE_EVENTS[0], students[0].id, None, "y" * 50,
                                   T0)
        quota = StoredBytes(storage, limit=100, code_limit=60)
        statements: list[float] = []
        stop = observe_statements(statements.append)
        try:
            for student in students[1:]:
                await quota.charge(room.id, student.id, 100, "chat")  # stored nothing yet
            # The first student's earlier events count: 90 of 100 bytes, 50 of 60 of code.
            await quota.charge(room.id, students[0].id, 10, "chat")
            with pytest.raises(QuotaExceeded):
                await quota.charge(room.id, students[0].id, 1, "chat")
            with pytest.raises(QuotaExceeded):
                await quota.charge(room.id, students[0].id, 11, CODE_EVENTS[0])
            await quota.charge(room.id, students[0].id, 10, CODE_EVENTS[0])
            # Counted here: a second event of a student at the limit is refused.
            with pytest.raises(QuotaExceeded):
                await quota.charge(room.id, students[1].id, 1, "chat")
            quota.refund(room.id, students[1].id, 100, "chat")
            await quota.charge(room.id, students[1].id, 100, "chat")
        finally:
            stop()
        assert len(statements) == 1
