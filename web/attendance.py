"""Attendance as the instructor reads it: every student of the class, present or absent, with
first join, last leave and time connected as m:ss; and the same as CSV, per session and per
class (sessions x students).

Pure functions over the records `classroom/` returns; web/room_pages.py serves them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from .render import iso_time, shown_time

if TYPE_CHECKING:  # web/ calls classroom/, never storage/; the record types are only names
    from classroom import Attendance, Member, Room, User

__all__ = ["attendance_rows", "class_csv", "connected", "session_csv"]

# A spreadsheet runs a cell starting with one of these as a formula: names are user text.
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def connected(seconds: float) -> str:
    """Time connected as m:ss ("0:00" for none; minutes go past 59: "75:02")."""
    whole = max(0, int(seconds))
    return f"{whole // 60}:{whole % 60:02d}"


def _seconds(record: Attendance, now: datetime) -> float:
    """Counting the stretch still running for someone connected now."""
    seconds = record.seconds_connected
    if record.open_connections > 0:
        seconds += max(0.0, (now - record.last_join).total_seconds())
    return seconds


def attendance_rows(records: Sequence[Attendance], members: Sequence[Member],
                    instructor_id: int, now: datetime) -> list[dict[str, Any]]:
    """One row per student of the class (present or absent), plus anyone else who came (the
    instructor; a student who has left the class since): instructor first, then by name."""
    by_user = {record.user.id: record for record in records}
    people: dict[int, User] = {m.user.id: m.user for m in members if m.role == "student"}
    for each in records:
        people.setdefault(each.user.id, each.user)
    rows: list[dict[str, Any]] = []
    for user in people.values():
        record = by_user.get(user.id)
        seconds = _seconds(record, now) if record else 0.0
        rows.append({
            "user": user,
            "instructor": user.id == instructor_id,
            "present": record is not None,
            "online": record is not None and record.open_connections > 0,
            "first_join": record.first_join if record else None,
            "last_leave": record.last_leave if record else None,
            "seconds": seconds,
            "connected": connected(seconds),
        })
    rows.sort(key=lambda row: (not row["instructor"], row["user"].display_name.lower(),
                               row["user"].id))
    return rows


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv(rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in rows:
        writer.writerow([_cell(value) for value in row])
    return out.getvalue()


def session_csv(rows: Sequence[dict[str, Any]]) -> str:
    """One session: a line per person. Times are ISO 8601 UTC."""
    lines: list[list[object]] = [["name", "username", "role", "status", "first join (UTC)",
                                  "last leave (UTC)", "connected (m:ss)", "seconds"]]
    for row in rows:
        user = row["user"]
        lines.append([
            user.display_name, user.username,
            "instructor" if row["instructor"] else "student",
            "present" if row["present"] else "absent",
            iso_time(row["first_join"]) if row["first_join"] else "",
            "connected now" if row["online"] else
            iso_time(row["last_leave"]) if row["last_leave"] else "",
            row["connected"], round(row["seconds"]),
        ])
    return _csv(lines)


def class_csv(sessions: Sequence[tuple[Room, Sequence[dict[str, Any]]]]) -> str:
    """Every session of the class (oldest first) x every student: minutes connected as m:ss,
    "absent" for a student who never joined. Students who came to any session and left the
    class since keep their line."""
    students: dict[int, User] = {}
    for _, rows in sessions:
        for row in rows:
            if not row["instructor"]:
                students.setdefault(row["user"].id, row["user"])
    ordered = sorted(students.values(), key=lambda u: (u.display_name.lower(), u.id))
    header: list[object] = ["name", "username"]
    for room, _ in sessions:
        header.append(f"{shown_time(room.created_at)} {room.topic}".strip())
    lines: list[list[object]] = [header]
    by_session = [{row["user"].id: row for row in rows} for _, rows in sessions]
    for user in ordered:
        line: list[object] = [user.display_name, user.username]
        for found in by_session:
            entry = found.get(user.id)
            line.append(entry["connected"] if entry and entry["present"] else "absent")
        lines.append(line)
    return _csv(lines)
