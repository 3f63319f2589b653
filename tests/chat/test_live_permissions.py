"""Who may send each client event: the whole table, every event x role, over a real server.

Every payload is valid, so only the sender's role decides the outcome. An outsider is a
student of another class (and inside a room of it); for them everything is `not_found`,
never `forbidden`, so a room's existence does not leak.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import attrs
import pytest
import trio

from tests.chat.harness import chat_world


@attrs.frozen
class Ctx:
    classroom_id: int
    room_id: int
    student_id: int


Payload = Callable[[Ctx], dict[str, Any]]

OK: Final = "accepted"
FORBIDDEN: Final = "forbidden"
NOT_FOUND: Final = "not_found"
ROLES: Final = ("instructor", "student", "outsider")

FILES: Final = [{"filename": "src/main.py", "status": "changed", "content": "print('hi')\n"}]
MARKDOWN: Final = "# Setup\nInstall it.\n\n# Loop\n```python\nfor i in range(3): pass\n```\n"

# event: (payload, answer when accepted, outcome for instructor, student, outsider)
TABLE: Final[dict[str, tuple[Payload, str, str, str, str]]] = {
    "room/create": (lambda c: {"classroom_id": c.classroom_id, "kind": "discussion",
                               "topic": "Sockets"},
                    "room/update", OK, FORBIDDEN, NOT_FOUND),
    "room/join": (lambda c: {"room_id": c.room_id}, "room/join", OK, OK, NOT_FOUND),
    "room/rejoin": (lambda c: {"room_id": c.room_id, "after": 0},
                    "room/join", FORBIDDEN, OK, NOT_FOUND),
    "room/rehost": (lambda c: {"room_id": c.room_id, "after": 0},
                    "room/join", OK, FORBIDDEN, NOT_FOUND),
    "room/leave": (lambda c: {"room_id": c.room_id}, "ack", OK, OK, NOT_FOUND),
    "room/kill": (lambda c: {"room_id": c.room_id, "user_id": c.student_id},
                  "ack", OK, FORBIDDEN, NOT_FOUND),
    "room/close": (lambda c: {"room_id": c.room_id}, "ack", OK, FORBIDDEN, NOT_FOUND),
    "message": (lambda c: {"room_id": c.room_id, "text": "hello"}, "ack", OK, OK, NOT_FOUND),
    "message/to_mentor": (lambda c: {"room_id": c.room_id, "text": "a question"},
                          "ack", FORBIDDEN, OK, NOT_FOUND),
    "message/to_client": (lambda c: {"room_id": c.room_id, "user_id": c.student_id,
                                     "text": "an answer"}, "ack", OK, FORBIDDEN, NOT_FOUND),
    "message/user": (lambda c: {"room_id": c.room_id, "user_id": c.student_id},
                     "message/user", OK, OK, NOT_FOUND),
    "settings": (lambda c: {"room_id": c.room_id, "files_to_ignore": "venv/\n*.pyc\n.env"},
                 "ack", OK, FORBIDDEN, NOT_FOUND),
    "sharing/start": (lambda c: {"room_id": c.room_id}, "ack", OK, FORBIDDEN, NOT_FOUND),
    "sharing/end": (lambda c: {"room_id": c.room_id}, "ack", OK, FORBIDDEN, NOT_FOUND),
    "sharing/code_send": (lambda c: {"room_id": c.room_id, "files": FILES},
                          "ack", FORBIDDEN, OK, NOT_FOUND),
    "sharing/code_update": (lambda c: {"room_id": c.room_id, "files": FILES},
                            "ack", FORBIDDEN, OK, NOT_FOUND),
    "steps/all": (lambda c: {"room_id": c.room_id, "steps": [
                      {"name": "Setup", "content": "Install", "language": "",
                       "type": "theory"}]},
                  "ack", OK, FORBIDDEN, NOT_FOUND),
    "steps/import": (lambda c: {"room_id": c.room_id, "markdown": MARKDOWN},
                     "ack", OK, FORBIDDEN, NOT_FOUND),
    "steps/status/to_mentor": (lambda c: {"room_id": c.room_id, "step": 0, "status": "DONE"},
                               "ack", FORBIDDEN, OK, NOT_FOUND),
    "steps/status/to_client": (lambda c: {"room_id": c.room_id, "user_id": c.student_id,
                                          "step": 0, "status": "ACCEPTED"},
                               "ack", OK, FORBIDDEN, NOT_FOUND),
    "steps/table": (lambda c: {"room_id": c.room_id}, "steps/table", OK, FORBIDDEN, NOT_FOUND),
    "steps/preview": (lambda c: {"room_id": c.room_id, "markdown": MARKDOWN},
                      "steps/preview", OK, FORBIDDEN, NOT_FOUND),
    "sharing/code": (lambda c: {"room_id": c.room_id, "user_id": c.student_id},
                     "sharing/code", OK, FORBIDDEN, NOT_FOUND),
    "exercise": (lambda c: {"room_id": c.room_id, "content": "Write fizzbuzz"},
                 "ack", OK, FORBIDDEN, NOT_FOUND),
    "exercise/feedback": (lambda c: {"room_id": c.room_id, "user_id": c.student_id,
                                     "accepted": True}, "ack", OK, FORBIDDEN, NOT_FOUND),
    "exercise/reset": (lambda c: {"room_id": c.room_id}, "ack", OK, FORBIDDEN, NOT_FOUND),
    "signal": (lambda c: {"room_id": c.room_id, "value": "HELP"},
               "ack", FORBIDDEN, OK, NOT_FOUND),
}

# Events that create or enter a room: the sender has not joined the room beforehand.
ENTERING: Final = {"room/create", "room/join", "room/rejoin", "room/rehost"}

CASES: Final = [pytest.param(event, id=event) for event in TABLE]


def test_table_covers_every_client_event() -> None:
    from classroom.live import SPECS

    handled = {"room/create", "room/join", "room/rejoin", "room/rehost", "room/leave",
               "room/kill", "room/close", "message/user", "steps/table", "steps/preview",
               "sharing/code", *SPECS}
    assert set(TABLE) == handled


@pytest.mark.parametrize("event", CASES)
async def test_who_may_send(db_url: str, event: str) -> None:
    """One row of the table: the outsider, then the student, then the instructor (whose
    event may end the room) each send the event on a connection of their own."""
    with trio.fail_after(10):
        async with chat_world(db_url) as world:
            lesson = await world.live_class("teacher", "sam")
            teacher, sam = lesson.people
            classroom, room = lesson.classroom, lesson.room
            olga = await world.person("olga")
            other_teacher = await world.person("otto")
            elsewhere = await world.classroom(other_teacher, olga, name="Databases")
            elsewhere_room = await world.live_room(other_teacher, elsewhere)
            ctx = Ctx(classroom.id, room.id, sam.id)
            payload, answer, *outcomes = TABLE[event]
            people = {"instructor": teacher, "student": sam, "outsider": olga}
            wrong = []
            for role in reversed(ROLES):
                outcome = outcomes[ROLES.index(role)]
                async with world.connect(people[role]) as peer:
                    if role == "outsider":
                        await peer.join(elsewhere_room.id)
                        assert await peer.refused("room/join", {"room_id": room.id}) == (
                            NOT_FOUND)
                    elif event not in ENTERING:
                        await peer.join(room.id)
                    before = await world.last_seq(room.id)
                    frame = await peer.call(event, payload(ctx))
                    if frame["event"] == "error":
                        got = frame["data"]["code"]
                        assert frame["data"]["message"]
                        assert await world.last_seq(room.id) == before, role
                        await peer.sync()  # a refusal costs nothing: the connection works
                    else:
                        assert frame["event"] == answer, frame
                        got = OK
                    if got != outcome:
                        wrong.append(f"{role}: expected {outcome}, got {got} ({frame})")
            assert not wrong, "\n".join(wrong)
