"""The pages of live sessions and discussions: the sessions list with attendance, the live
room, discussions, and a coding room's results table.

The server renders each page's frame and hands live.js its settings in data-* attributes of
#live (the CSP allows no inline script); static/live.js does the live part over the chat
server's WebSocket. Only an ended discussion is rendered whole here: its transcript, read-only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from classroom.errors import ClassroomError, NotFound
from classroom.rooms import DISCUSSION, HISTORY_PAGE, LIVE
from classroom.rules import Action, Role, check, may
from protocol import Response

from .attendance import attendance_rows, class_csv, session_csv
from .inputs import query_int
from .pages import FORM_ERRORS, PageGroup, PageRoute, Visit
from .render import with_security

if TYPE_CHECKING:  # web/ calls classroom/, never storage/; the record types are only names
    from classroom import Classroom, Room, RoomEvent

__all__ = ["RoomPages"]

# Sessions per page of the sessions list: each shown with its attendance (one query each).
SESSIONS_PAGE: Final = 20
# The events a room's transcript shows; the rest (steps, code, signals) belong to other views.
TRANSCRIPT_EVENTS: Final = frozenset({"message", "message/to_mentor", "message/to_client",
                                      "room/closed"})


class RoomPages(PageGroup):
    def routes(self) -> list[PageRoute]:
        return [
            ("GET", "/classrooms/{id:int}/sessions", self.sessions, False),
            ("POST", "/classrooms/{id:int}/sessions", self.start_session, False),
            ("POST", "/sessions/{id:int}/end", self.end_session, False),
            ("GET", "/classrooms/{id:int}/live", self.live, False),
            ("GET", "/sessions/{id:int}/attendance.csv", self.session_attendance_csv, False),
            ("GET", "/classrooms/{id:int}/attendance.csv", self.class_attendance_csv, False),
            ("GET", "/classrooms/{id:int}/discussions", self.discussions, False),
            ("POST", "/classrooms/{id:int}/discussions", self.open_discussion, False),
            ("GET", "/discussions/{id:int}", self.discussion, False),
            ("GET", "/sessions/{id:int}", self.session, False),
            ("GET", "/rooms/{id:int}/stats", self.room_stats, False),
            ("GET", "/roomstats/{id:int}", self.room_stats, False),
        ]

    # -- live sessions --------------------------------------------------------------------

    async def sessions(self, visit: Visit) -> Response:
        return await self._sessions_page(visit)

    async def start_session(self, visit: Visit) -> Response:
        classroom_id = int(visit.request.params["id"])
        try:
            await self._services.rooms.open(visit.me, classroom_id, LIVE, visit.field("topic"))
        except FORM_ERRORS as error:
            return await self._sessions_page(visit, error=error)
        return Response.redirect(f"/classrooms/{classroom_id}/live")

    async def end_session(self, visit: Visit) -> Response:
        room = await self._services.rooms.end(visit.me, int(visit.request.params["id"]))
        if room.kind == DISCUSSION:
            return Response.redirect(f"/discussions/{room.id}")
        return Response.redirect(f"/classrooms/{room.classroom_id}/sessions")

    async def _sessions_page(self, visit: Visit, *, error: ClassroomError | None = None
                             ) -> Response:
        """Live sessions, newest first; the instructor sees each one's attendance."""
        me = visit.me
        classroom_id = int(visit.request.params["id"])
        classroom, role = await self._services.classes.get(me, classroom_id)
        before = query_int(visit.request, "before")
        rooms = await self._services.rooms.in_class(me, classroom_id, LIVE)
        current = next((room for room in rooms if room.is_open), None)
        if before is not None:
            rooms = [room for room in rooms if room.id < before]
        shown = rooms[:SESSIONS_PAGE]
        older = None
        if len(rooms) > SESSIONS_PAGE:
            older = f"/classrooms/{classroom_id}/sessions?before={shown[-1].id}"
        show_attendance = may(role, Action.VIEW_ATTENDANCE)
        now = self._services.clock()
        members = (await self._services.classes.roster(me, classroom_id)
                   if show_attendance else [])
        sessions: list[dict[str, Any]] = []
        for room in shown:
            attendees = None
            if show_attendance:
                _, records = await self._services.rooms.attendance(me, room.id)
                attendees = attendance_rows(records, members, classroom.instructor_id, now)
            ended = room.ended_at or now
            sessions.append({"room": room, "attendance": attendees,
                             "minutes": round((ended - room.created_at).total_seconds() / 60)})
        context: dict[str, Any] = dict(
            classroom=classroom, role=role, sessions=sessions, older=older,
            can_manage=may(role, Action.MANAGE_SESSION),
            show_attendance=show_attendance,
            current=current,
            tabs=await self._tabs(classroom_id, role, "sessions", current is not None),
            values={"topic": visit.field("topic")})
        if error is not None:
            return self._form_error(visit, "sessions.html", error, **context)
        return self._page(visit, "sessions.html", **context)

    async def session_attendance_csv(self, visit: Visit) -> Response:
        me = visit.me
        room, records = await self._services.rooms.attendance(
            me, int(visit.request.params["id"]))
        classroom, _ = await self._services.classes.get(me, room.classroom_id)
        members = await self._services.classes.roster(me, room.classroom_id)
        rows = attendance_rows(records, members, classroom.instructor_id,
                               self._services.clock())
        return _csv_response(session_csv(rows), f"attendance-session-{room.id}.csv")

    async def class_attendance_csv(self, visit: Visit) -> Response:
        me = visit.me
        classroom_id = int(visit.request.params["id"])
        classroom, role = await self._services.classes.get(me, classroom_id)
        check(role, Action.VIEW_ATTENDANCE)
        members = await self._services.classes.roster(me, classroom_id)
        now = self._services.clock()
        sessions = []
        for room in reversed(await self._services.rooms.in_class(me, classroom_id, LIVE)):
            _, records = await self._services.rooms.attendance(me, room.id)
            sessions.append((room, attendance_rows(records, members,
                                                   classroom.instructor_id, now)))
        return _csv_response(class_csv(sessions), f"attendance-class-{classroom_id}.csv")

    async def live(self, visit: Visit) -> Response:
        """The class's current live session, or a notice that none is running (the page
        then waits for one: live.js reloads it when the instructor starts a session)."""
        me = visit.me
        classroom_id = int(visit.request.params["id"])
        classroom, role = await self._services.classes.get(me, classroom_id)
        room = await self._services.rooms.current_session(classroom_id)
        mode = "chat" if room is not None else "wait"
        return self._page(
            visit, "live.html", classroom=classroom, role=role, room=room,
            tabs=await self._tabs(classroom_id, role, "live", room is not None),
            can_manage=may(role, Action.MANAGE_SESSION), values={"topic": ""},
            live=self._live_settings(visit, classroom, role, room, mode))

    # -- discussions --------------------------------------------------------------------

    async def discussions(self, visit: Visit) -> Response:
        return await self._discussions_page(visit)

    async def open_discussion(self, visit: Visit) -> Response:
        classroom_id = int(visit.request.params["id"])
        try:
            room = await self._services.rooms.open(visit.me, classroom_id, DISCUSSION,
                                                   visit.field("topic"))
        except FORM_ERRORS as error:
            return await self._discussions_page(visit, error=error)
        return Response.redirect(f"/discussions/{room.id}")

    async def _discussions_page(self, visit: Visit, *, error: ClassroomError | None = None
                                ) -> Response:
        me = visit.me
        classroom_id = int(visit.request.params["id"])
        classroom, role = await self._services.classes.get(me, classroom_id)
        rooms = await self._services.rooms.in_class(me, classroom_id, DISCUSSION)
        context: dict[str, Any] = dict(
            classroom=classroom, role=role, discussions=rooms,
            can_open=may(role, Action.OPEN_DISCUSSION),
            tabs=await self._tabs(classroom_id, role, "discussions"),
            values={"topic": visit.field("topic")})
        if error is not None:
            return self._form_error(visit, "discussions.html", error, **context)
        return self._page(visit, "discussions.html", **context)

    async def discussion(self, visit: Visit) -> Response:
        """An open discussion is a live chat page; an ended one is its transcript, read-only,
        in pages of HISTORY_PAGE events (`?after=SEQ`)."""
        me = visit.me
        rooms = self._services.rooms
        access = await rooms.access(me, int(visit.request.params["id"]))
        room, role = access.room, access.role
        if room.kind != DISCUSSION:
            raise NotFound("no such discussion")
        context: dict[str, Any] = dict(
            classroom=access.classroom, role=role, room=room,
            tabs=await self._tabs(room.classroom_id, role, "discussions"),
            can_manage=may(role, Action.MANAGE_SESSION), live=None)
        if room.is_open:
            context["live"] = self._live_settings(visit, access.classroom, role, room, "chat")
        else:
            context.update(await self._transcript(visit, room))
        return self._page(visit, "discussion.html", **context)

    async def session(self, visit: Visit) -> Response:
        """An ended live session's transcript (a running one is the Live tab)."""
        access = await self._services.rooms.access(visit.me, int(visit.request.params["id"]))
        room, role = access.room, access.role
        if room.kind != LIVE:
            raise NotFound("no such session")
        if room.is_open:
            return Response.redirect(f"/classrooms/{room.classroom_id}/live")
        return self._page(
            visit, "session.html", classroom=access.classroom, role=role, room=room,
            tabs=await self._tabs(room.classroom_id, role, "sessions"),
            **await self._transcript(visit, room))

    async def _transcript(self, visit: Visit, room: Room) -> dict[str, Any]:
        """An ended room's transcript as the reader may see it (public messages and their
        own private ones), in pages of HISTORY_PAGE events (`?after=SEQ`)."""
        me = visit.me
        rooms = self._services.rooms
        after = query_int(visit.request, "after") or 0
        events = await rooms.history(me, room.id, after=after, limit=HISTORY_PAGE)
        roster = await rooms.members(room.classroom_id)
        names = {user.id: user.display_name for user, _ in roster}
        return dict(
            transcript=[entry for e in events if (entry := _transcript_entry(e, names, me.id))],
            after=after,
            later=events[-1].seq if len(events) == HISTORY_PAGE else None)

    # -- a coding room's results, and what live.js is told ------------------------------

    async def room_stats(self, visit: Visit) -> Response:
        """A coding room's results, live (instructor only): the lab's grid alone (lab.js draws
        it from the join answer's state and keeps it current from the students' events; live.js
        keeps the room joined)."""
        access = await self._services.rooms.access(visit.me, int(visit.request.params["id"]),
                                                   Action.RUN_ROOM)
        room, role = access.room, access.role
        tab = "live" if room.kind == LIVE else "discussions"
        return self._page(
            visit, "stats.html", classroom=access.classroom, role=role, room=room,
            tabs=await self._tabs(room.classroom_id, role, tab),
            live=self._live_settings(visit, access.classroom, role, room, "stats"))

    def _live_settings(self, visit: Visit, classroom: Classroom, role: Role,
                       room: Room | None, mode: str) -> dict[str, str] | None:
        """The data-* attributes live.js reads (None when this server runs no chat).
        Modes: "chat" (a room's chat), "stats" (the results table; no history needed, so it
        starts after the room's last seq) and "wait" (no session yet: reload when one starts)."""
        if self._chat_url is None:
            return None
        me = visit.me
        settings = {"mode": mode, "chat-url": self._chat_url, "classroom-id": str(classroom.id),
                    "user-id": str(me.id), "user-name": me.display_name, "role": role.value,
                    "instructor-id": str(classroom.instructor_id)}
        if room is not None:
            settings |= {"room-id": str(room.id), "kind": room.kind,
                         "after": str(room.last_seq if mode == "stats" else 0)}
        return settings


def _transcript_entry(event: RoomEvent, names: Mapping[int, str], viewer_id: int
                      ) -> dict[str, Any] | None:
    """One line of a read-only transcript, or None for an event it does not show."""
    if event.event not in TRANSCRIPT_EVENTS:
        return None
    data = json.loads(event.data)
    sender = data.get("from", {})
    recipient = event.recipient_id
    return {
        "seq": event.seq,
        "event": event.event,
        "author": sender.get("name", "?"),
        "author_id": event.sender_id,
        "mine": event.sender_id == viewer_id,
        "text": data.get("text") or data.get("message", ""),
        "at": event.created_at,
        "private": recipient is not None,
        "to": (None if recipient is None else "you" if recipient == viewer_id
               else names.get(recipient, "a former member")),
    }


def _csv_response(text: str, filename: str) -> Response:
    return with_security(Response(200, (
        ("Content-Type", "text/csv; charset=utf-8"),
        ("Content-Disposition", f'attachment; filename="{filename}"'),
    ), text.encode()))
