"""What the terminal shows: text from others made safe for a terminal, the room's members
(`Roster`), and the lines each server event shows (`format_event`). Sans-IO."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, tzinfo
from typing import Any, Final

import attrs

# -- text ---------------------------------------------------------------------------------

_CONTROL: Final = dict.fromkeys([*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F,
                                 *range(0x80, 0xA0)], "\N{REPLACEMENT CHARACTER}")


def sanitize(text: str) -> str:
    """Text from others, safe for a terminal: escape sequences and control characters
    (ESC, CR, backspace, C1 controls) cannot move the cursor or recolour the screen.
    Newlines are kept, tabs become spaces."""
    return text.replace("\r\n", "\n").replace("\t", "    ").translate(_CONTROL)


def _indent(text: str, width: int) -> str:
    """Continuation lines of a multi-line message, lined up under its first line."""
    return text.replace("\n", "\n" + " " * width)


def _clock(at: object, tz: tzinfo | None) -> str:
    if not isinstance(at, str):
        return ""
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        return ""
    return moment.astimezone(tz).strftime("[%H:%M] ")


# -- members ------------------------------------------------------------------------------

@attrs.define
class Member:
    id: int
    username: str
    display_name: str
    role: str = "student"
    online: bool = False

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Member:
        return cls(id=int(value["id"]), username=str(value.get("username", "")),
                   display_name=str(value.get("display_name") or value.get("name") or
                                    value.get("username") or f"user {value['id']}"),
                   role=str(value.get("role", "student")), online=bool(value.get("online")))


class Roster:
    """The room's members as the join answer listed them, kept current by `presence`."""

    def __init__(self) -> None:
        self.by_id: dict[int, Member] = {}
        # Who is online as the server counts it (join answer, presence), when it says: in a
        # big room a student's join answer lists only the first names.
        self.online_count: int | None = None

    def reset(self, members: Iterable[Mapping[str, Any]],
              online_count: int | None = None) -> None:
        self.by_id = {}
        self.online_count = online_count
        for value in members:
            member = Member.from_json(value)
            self.by_id[member.id] = member

    def online(self) -> int:
        return (self.online_count if self.online_count is not None
                else sum(m.online for m in self.by_id.values()))

    def presence(self, user_id: int, name: str, online: bool) -> bool:
        """Apply a presence event; True when it changed something worth telling."""
        member = self.by_id.get(user_id)
        if member is None:
            if online:  # (one never listed who left is not kept as an offline member)
                self.by_id[user_id] = Member(user_id, "", name or f"user {user_id}",
                                             online=online)
            return True
        changed = member.online != online
        member.online = online
        return changed

    def name(self, user_id: int | None) -> str:
        member = self.by_id.get(user_id) if user_id is not None else None
        return member.display_name if member else f"user {user_id}"

    def find(self, name: str, *, exclude: int | None = None) -> Member | str:
        """A member by username or display name (case-insensitive), or why not."""
        wanted = name.strip().lstrip("@").casefold()
        others = [m for m in self.by_id.values() if m.id != exclude]
        by_username = [m for m in others if m.username.casefold() == wanted]
        if by_username:
            return by_username[0]
        by_name = [m for m in others if m.display_name.casefold() == wanted]
        if len(by_name) == 1:
            return by_name[0]
        if by_name:
            names = ", ".join(m.username for m in by_name)
            return f"several members are called {name!r}; use a username ({names})"
        return f"nobody called {name!r} in this room; /who lists the members"

    def split_target(self, rest: str, *, exclude: int | None = None) -> tuple[Member, str] | str:
        """`NAME TEXT` -> (member, text). NAME may have spaces ("Ann Lee hi" finds Ann Lee)
        or be quoted; usernames win over display names, longer names over shorter."""
        rest = rest.strip()
        if rest.startswith('"'):
            name, quote, text = rest[1:].partition('"')
            if not quote:
                return 'a quoted name needs its closing "'
            found = self.find(name, exclude=exclude)
            return found if isinstance(found, str) else (found, text.strip())
        folded = rest.casefold()
        best: list[tuple[int, int, Member]] = []
        for member in self.by_id.values():
            if member.id == exclude:
                continue
            for rank, name in ((1, member.username), (0, member.display_name)):
                key = name.casefold()
                if key and (folded == key or folded.startswith(key + " ")):
                    best.append((len(key), rank, member))
        if not best:
            first = rest.split(" ", 1)[0]
            return f"nobody called {first!r} in this room; /who lists the members"
        best.sort(key=lambda item: (item[0], item[1]), reverse=True)
        top = [m for length, rank, m in best if (length, rank) == best[0][:2]]
        if len({m.id for m in top}) > 1:
            return "that name is ambiguous; use the username"
        member = top[0]
        text = rest[best[0][0]:].strip()
        return member, text

    def counts(self, *, whole_class: bool) -> str:
        """"N members, M online" for the instructor, whose list is the whole class; "M
        online" for a student, who is shown who is online, not the class."""
        online = f"{self.online()} online"
        return f"{len(self.by_id)} members, {online}" if whole_class else online

    def lines(self, me: int | None, *, whole_class: bool = True) -> list[str]:
        order = sorted(self.by_id.values(),
                       key=lambda m: (m.role != "instructor", not m.online,
                                      m.display_name.casefold()))
        listed = sum(m.online for m in order)
        more = f" ({listed} listed)" if listed < self.online() else ""
        out = [f"{self.counts(whole_class=whole_class)}{more}:"]
        for m in order:
            dot = "●" if m.online else "○"
            you = " (you)" if m.id == me else ""
            handle = f" @{m.username}" if m.username else ""
            out.append(f"  {dot} {sanitize(m.display_name)}{handle}{you}  {m.role}"
                       f"{'' if m.online else ', offline'}")
        return out


# -- events -> lines ----------------------------------------------------------------------

@attrs.frozen
class Viewer:
    """Who is reading: decides "you" and the names in private lines."""

    me: int | None
    roster: Roster
    tz: tzinfo | None = None


def _sender(data: Mapping[str, Any], viewer: Viewer) -> tuple[int | None, str]:
    sender = data.get("from")
    if isinstance(sender, Mapping):
        sid = sender.get("id")
        sid = sid if isinstance(sid, int) else None
        name = sender.get("name")
        return sid, str(name) if name else viewer.roster.name(sid)
    return None, "someone"


def _who(user_id: int | None, name: str, viewer: Viewer) -> str:
    return "you" if user_id is not None and user_id == viewer.me else sanitize(name)


def format_event(event: str, data: Mapping[str, Any], viewer: Viewer) -> list[str]:
    """The lines one server event shows; [] for events with nothing to show."""
    at = _clock(data.get("at"), viewer.tz)
    sid, sname = _sender(data, viewer)
    who = _who(sid, sname, viewer)
    text = sanitize(str(data.get("text", "")))
    target = data.get("user_id") if isinstance(data.get("user_id"), int) else None
    target_name = _who(target, viewer.roster.name(target), viewer)
    if event == "message":
        head = f"{at}{sanitize(sname)}: "
        return [head + _indent(text, len(head))]
    if event == "message/to_mentor":
        instructor = "you" if _is_instructor(viewer) else "instructor"
        head = f"{at}[private] {who} -> {instructor}: "
        return [head + _indent(text, len(head))]
    if event == "message/to_client":
        head = f"{at}[private] {who} -> {target_name}: "
        return [head + _indent(text, len(head))]
    if event == "presence":
        return []  # shown by ChatSession, which knows whether it changed anything
    if event == "room/closed":
        return [f"{at}*** {sanitize(str(data.get('message') or 'this room has ended'))}"]
    if event == "room/update":
        room = data.get("room")
        if isinstance(room, Mapping):
            return [f"* new {_room_label(room)} (room {room.get('id')})"]
        return []
    if event == "room/kill":
        return [f"*** {sanitize(str(data.get('message') or 'you were removed from the room'))}"]
    if event == "alerts":
        status = str(data.get("status", "INFORMATION")).upper()
        return [f"[{sanitize(status)}] {sanitize(str(data.get('message', '')))}"]
    if event == "settings":
        return [f"{at}* {who} changed the room settings"]
    if event == "sharing/start":
        return [f"{at}* {who} started code sharing"]
    if event == "sharing/end":
        return [f"{at}* {who} ended code sharing"]
    if event in ("sharing/code_send", "sharing/code_update"):
        files = data.get("files")
        names = [sanitize(str(f.get("filename", "?"))) for f in files
                 if isinstance(f, Mapping)] if isinstance(files, list) else []
        return [f"{at}* {who} shared {len(names)} file(s): {', '.join(names[:5])}"
                f"{' …' if len(names) > 5 else ''}"]
    if event == "steps/all":
        steps = data.get("steps")
        names = [sanitize(str(s.get("name", "?"))) for s in steps
                 if isinstance(s, Mapping)] if isinstance(steps, list) else []
        return [f"{at}* {who} set {len(names)} step(s):"] + [
            f"    {i}. {name}" for i, name in enumerate(names, 1)]
    if event == "steps/status/to_mentor":
        return [f"{at}* {who}: step {_step(data)} is {sanitize(str(data.get('status')))}"]
    if event == "steps/status/to_client":
        return [f"{at}* {who} marked step {_step(data)} {sanitize(str(data.get('status')))}"
                f" for {target_name}"]
    if event == "exercise":
        head = f"{at}* exercise from {who}: "
        return [head + _indent(sanitize(str(data.get("content", ""))), len(head))]
    if event == "exercise/feedback":
        verdict = "accepted" if data.get("accepted") else "not accepted yet"
        return [f"{at}* {who}: exercise of {target_name} {verdict}"]
    if event == "exercise/reset":
        return [f"{at}* {who} reset the exercise feedback"]
    if event == "signal":
        return [f"{at}* {who} signals {sanitize(str(data.get('value')))}"]
    if event in ("ack", "room/join", "message/user", "steps/table"):
        return []
    return [f"{at}* {sanitize(event)} from {who}"]


def _is_instructor(viewer: Viewer) -> bool:
    me = viewer.roster.by_id.get(viewer.me) if viewer.me is not None else None
    return me is not None and me.role == "instructor"


def _step(data: Mapping[str, Any]) -> str:
    step = data.get("step")
    return str(step + 1) if isinstance(step, int) else "?"


def _room_label(room: Mapping[str, Any]) -> str:
    topic = sanitize(str(room.get("topic") or ""))
    if room.get("kind") == "live":
        return f"live session{f': {topic}' if topic else ''}"
    return f"discussion: {topic or '(no topic)'}"
