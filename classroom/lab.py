"""The live-coding lab's view of a room: the state a member gets when joining (steps, settings,
sharing, exercise; a student's own statuses, feedback, signal and code; the instructor's grid
of every student), each student's shared code, and the alerts the server sends.

The state is the room_state rows `chat/handlers.py` writes after each stored event (see the
table in live.py), read in a constant number of queries however many steps and students:
one for a student, two for the instructor (the roster, then the room's rows without code).

A student's shared code is kept whole: `sharing/code_send` replaces it, `sharing/code_update`
changes, adds or deletes files in it. Beside it a small summary (names and statuses, no
content) is what the grid shows; the content goes only to the instructor who asks for it
(`sharing/code`) and to the student themself.

    alert                                       to               status
    ------------------------------------------  ---------------  -----------
    a student signals HELP / a step HELP        the instructor   WARNING
    a step or exercise accepted                 that student     SUCCESS
    a step or exercise rejected                 that student     WARNING
    sharing started / ended                     the students     INFORMATION
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Final

import attrs

from storage import RoomEvent, StateValue, StateWrite, Storage, User

from .errors import TooLarge, translate_storage_errors
from .live import MAX_FILES_PER_SHARE, MAX_SHARE_BYTES
from .rooms import RoomAccess, Rooms
from .rules import Action, Role, check

CODE: Final = "code"
FILES: Final = "files"
CODE_EVENTS: Final = frozenset({"sharing/code_send", "sharing/code_update"})
NO_STATUS: Final = "NONE"


@attrs.frozen
class Alert:
    status: str
    message: str
    # Who gets it: "instructor", "target" (the event's recipient) or "students".
    to: str
    user_id: int | None = None


class Lab:
    def __init__(self, storage: Storage, rooms: Rooms) -> None:
        self._storage = storage
        self._rooms = rooms

    @translate_storage_errors
    async def state(self, access: RoomAccess, viewer: User, online: Iterable[int]
                    ) -> dict[str, Any]:
        """The `state` of a `room/join` answer for this viewer."""
        room_id = access.room.id
        if access.role == Role.INSTRUCTOR:
            rows = await self._storage.list_room_state(room_id, skip=(CODE,))
            state = _room_part(rows)
            state["grid"] = await self._grid(access, rows, len(state["steps"]), set(online))
            return state
        rows = await self._storage.list_room_state(room_id, owners=(0, viewer.id),
                                                   skip=(FILES,))
        state = _room_part(rows)
        mine = _by_owner(rows).get(viewer.id, {})
        state["me"] = {**_student_part(mine, len(state["steps"])),
                       "files": _load(mine.get(CODE)).get("files", [])}
        return state

    @translate_storage_errors
    async def grid(self, access: RoomAccess, online: Iterable[int]) -> dict[str, Any]:
        """`steps/table`: step names and every student's row (instructor only)."""
        check(access.role, Action.RUN_ROOM)
        rows = await self._storage.list_room_state(access.room.id, skip=(CODE,))
        steps = _room_part(rows)["steps"]
        students = await self._grid(access, rows, len(steps), set(online))
        return {"room_id": access.room.id, "steps": [s.get("name", "") for s in steps],
                "students": students}

    async def _grid(self, access: RoomAccess, rows: list[StateValue], steps: int,
                    online: set[int]) -> list[dict[str, Any]]:
        owners = _by_owner(rows)
        students = []
        for user, role in await self._rooms.members(access.room.classroom_id):
            if role != Role.STUDENT:
                continue
            mine = owners.get(user.id, {})
            students.append({"user_id": user.id, "name": user.display_name,
                             "online": user.id in online, **_student_part(mine, steps),
                             "files": _load(mine.get(FILES)).get("files", [])})
        students.sort(key=lambda s: (s["name"].casefold(), s["user_id"]))
        return students

    @translate_storage_errors
    async def code(self, access: RoomAccess, student_id: int) -> list[dict[str, str]]:
        """A student's latest shared files, for the instructor."""
        check(access.role, Action.RUN_ROOM)
        await self._rooms.check_private_target(access, student_id)
        value = await self._storage.get_state(access.room.id, student_id, CODE)
        files: list[dict[str, str]] = _load(value).get("files", [])
        return files

    @translate_storage_errors
    async def merged_code(self, room_id: int, student_id: int, event: str,
                          files: list[dict[str, str]]) -> list[dict[str, str]]:
        """The student's whole code after this share; TooLarge when it would pass the share
        limits (checked before the event is stored)."""
        before: dict[str, dict[str, str]] = {}
        if event == "sharing/code_update":
            value = await self._storage.get_state(room_id, student_id, CODE)
            before = {f["filename"]: f for f in _load(value).get("files", [])}
        return merge_files(before, event, files)

    def code_state(self, student_id: int, files: list[dict[str, str]]
                   ) -> tuple[StateWrite, ...]:
        """The state a code share writes, stored with its event: the files and a summary."""
        summary = [{"filename": f["filename"], "status": f["status"],
                    "size": len(f["content"].encode("utf-8", "surrogatepass"))} for f in files]
        return (StateWrite(student_id, CODE, json.dumps({"files": files}, ensure_ascii=False)),
                StateWrite(student_id, FILES,
                           json.dumps({"files": summary}, ensure_ascii=False)))


def merge_files(before: dict[str, dict[str, str]], event: str, files: list[dict[str, str]]
                ) -> list[dict[str, str]]:
    """A student's code after a share: a send replaces it, an update marks the files it
    names new or changed (deleted ones go) and every other file unchanged."""
    current: dict[str, dict[str, str]] = {}
    if event == "sharing/code_update":
        current = {name: {**f, "status": "unchanged"} for name, f in before.items()}
    for f in files:
        name = f["filename"]
        if f["status"] == "deleted":
            current.pop(name, None)
            continue
        status = f["status"]
        if event == "sharing/code_update":
            status = "changed" if name in before else "new"
        elif status not in ("new", "changed", "unchanged"):
            status = "new"
        current[name] = {"filename": name, "status": status, "content": f["content"]}
    if len(current) > MAX_FILES_PER_SHARE:
        raise TooLarge(f"at most {MAX_FILES_PER_SHARE} files may be shared at once")
    total = sum(len(f["content"].encode("utf-8", "surrogatepass")) for f in current.values())
    if total > MAX_SHARE_BYTES:
        raise TooLarge(f"the shared files may hold at most {MAX_SHARE_BYTES // 1024} KiB")
    return sorted(current.values(), key=lambda f: f["filename"])


def alerts_of(event: RoomEvent) -> list[Alert]:
    """The alerts a stored event raises (most raise none)."""
    name = event.event
    if name not in _ALERTING:
        return []
    data = json.loads(event.data)
    who = str(data.get("from", {}).get("name", "A student"))
    if name == "signal" and data.get("value") == "HELP":
        return [Alert("WARNING", f"{who} needs help", "instructor", event.sender_id)]
    if name == "steps/status/to_mentor" and data.get("status") == "HELP":
        return [Alert("WARNING", f"{who} needs help with step {data['step'] + 1}",
                      "instructor", event.sender_id)]
    if name == "steps/status/to_client" and data.get("status") in ("ACCEPTED", "REJECTED"):
        accepted = data["status"] == "ACCEPTED"
        return [Alert("SUCCESS" if accepted else "WARNING",
                      f"Step {data['step'] + 1} was "
                      + ("accepted" if accepted else "rejected: have another look"),
                      "target")]
    if name == "exercise/feedback":
        accepted = bool(data.get("accepted"))
        return [Alert("SUCCESS" if accepted else "WARNING",
                      "Your exercise was "
                      + ("accepted" if accepted else "rejected: have another look"), "target")]
    if name == "sharing/start":
        return [Alert("INFORMATION", "Code sharing started: the instructor sees your files",
                      "students")]
    if name == "sharing/end":
        return [Alert("INFORMATION", "Code sharing ended", "students")]
    return []


_ALERTING: Final = frozenset({"signal", "steps/status/to_mentor", "steps/status/to_client",
                              "exercise/feedback", "sharing/start", "sharing/end"})


def _load(value: str | None) -> dict[str, Any]:
    if not value:
        return {}
    loaded: dict[str, Any] = json.loads(value)
    return loaded


def _by_owner(rows: list[StateValue]) -> dict[int, dict[str, str]]:
    owners: dict[int, dict[str, str]] = {}
    for row in rows:
        owners.setdefault(row.user_id, {})[row.name] = row.value
    return owners


def _room_part(rows: list[StateValue]) -> dict[str, Any]:
    room = _by_owner(rows).get(0, {})
    settings = _load(room.get("settings"))
    settings.pop("event", None)
    exercise = _load(room.get("exercise"))
    exercise.pop("event", None)
    return {
        "steps": _load(room.get("steps")).get("steps", []),
        "settings": settings or {"files_to_ignore": "", "names": [], "dirs": [],
                                 "extensions": []},
        "sharing": _load(room.get("sharing")).get("event") == "sharing/start",
        "exercise": exercise or None,
    }


def _student_part(mine: dict[str, str], steps: int) -> dict[str, Any]:
    statuses = [_load(mine.get(f"step/{i}")).get("status", NO_STATUS) for i in range(steps)]
    feedback = _load(mine.get("feedback"))
    return {"statuses": statuses,
            "signal": _load(mine.get("signal")).get("value", NO_STATUS),
            "feedback": feedback.get("accepted") if feedback else None}
