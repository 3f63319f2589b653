"""The terminal client: `classroom chat --server http://HOST:PORT [--user NAME] [--chat URL]`.

Log in through the JSON API (password read with `getpass`, never echoed), pick a class and
one of its open rooms, then read and send in that room over the live protocol until /quit,
end of input or Ctrl-C (exit 0). The connection comes back by itself (back-off with jitter,
0.5 s .. 10 s) and resumes with `room/rejoin` / `room/rehost` from the last seq seen, so
nothing is lost or printed twice.

Layout: everything that decides something is sans-IO and tested without sockets
(`parse_command`, `format_event`, `SeqTracker`, `Roster`, `Backoff`, `LineSplitter`,
`ChatSession`, the menu helpers); the rest is thin I/O: urllib for the few HTTP calls
(blocking, before trio starts), trio + trio-websocket for the chat, and a thread that reads
fd 0 for typed lines.

The client imports nothing of the server: it is a protocol peer like a browser.
"""

from __future__ import annotations

import codecs
import getpass
import json
import os
import random
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Any, Final

import attrs
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    ConnectionTimeout,
    DisconnectionTimeout,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

__all__ = [
    "ApiError",
    "Backoff",
    "ChatSession",
    "Command",
    "LineSplitter",
    "Member",
    "Roster",
    "SeqTracker",
    "Viewer",
    "chat_url_for",
    "format_event",
    "open_rooms",
    "parse_command",
    "pick",
    "run_terminal_client",
    "sanitize",
]

DEFAULT_CHAT_PORT: Final = 8001
HTTP_TIMEOUT: Final = 15.0
CONNECT_TIMEOUT: Final = 10.0
CLOSE_TIMEOUT: Final = 2.0
PING_INTERVAL: Final = 15.0
PING_TIMEOUT: Final = 10.0
BACKOFF_FIRST: Final = 0.5
BACKOFF_MAX: Final = 10.0
CLOSE_GOING_AWAY: Final = 1001
CLOSE_ABNORMAL: Final = 1006  # no close frame: the TCP connection just ended
CLOSE_TRY_AGAIN_LATER: Final = 1013
# Handshake refusals that retrying cannot fix.
FATAL_HANDSHAKE: Final = {401: "your session is no longer valid; log in again",
                          403: "the chat server refused this client",
                          404: "no chat endpoint at that address (is --chat right?)"}

HELP: Final = """\
Commands:
  TEXT               send TEXT to the room (start with // to send a line beginning with /)
  /to NAME TEXT      (instructor) private message to one student, by username or name
  /mentor TEXT       (student) private message to the instructor
  /who               who is in the room, and who is online
  /history [NAME]    the private conversation with NAME (students: with the instructor)
  /help              this list
  /quit              leave (so do Ctrl-D and Ctrl-C)"""


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

    def reset(self, members: Iterable[Mapping[str, Any]]) -> None:
        self.by_id = {}
        for value in members:
            member = Member.from_json(value)
            self.by_id[member.id] = member

    def presence(self, user_id: int, name: str, online: bool) -> bool:
        """Apply a presence event; True when it changed something worth telling."""
        member = self.by_id.get(user_id)
        if member is None:
            self.by_id[user_id] = Member(user_id, "", name or f"user {user_id}", online=online)
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

    def lines(self, me: int | None) -> list[str]:
        order = sorted(self.by_id.values(),
                       key=lambda m: (m.role != "instructor", not m.online,
                                      m.display_name.casefold()))
        out = [f"{len(order)} members, {sum(m.online for m in order)} online:"]
        for m in order:
            dot = "●" if m.online else "○"
            you = " (you)" if m.id == me else ""
            handle = f" @{m.username}" if m.username else ""
            out.append(f"  {dot} {sanitize(m.display_name)}{handle}{you}  {m.role}"
                       f"{'' if m.online else ', offline'}")
        return out


# -- seqs ---------------------------------------------------------------------------------

class SeqTracker:
    """The highest room seq seen. The server sends a room's events in seq order (history,
    then live); a resumed connection may repeat what we already have, never reorder it,
    so "new" is simply "above the highest seen". Gaps are normal (others' private events)."""

    def __init__(self) -> None:
        self.last = 0

    def accept(self, seq: int) -> bool:
        if seq <= self.last:
            return False
        self.last = seq
        return True


# -- back-off -----------------------------------------------------------------------------

class Backoff:
    """Delays between reconnect attempts, from `first` up to `cap`: attempt n waits a time
    drawn uniformly from [first * 2**n, first * 2**(n+1)] (capped), so clients dropped
    together do not all come back in the same instant."""

    def __init__(self, first: float = BACKOFF_FIRST, cap: float = BACKOFF_MAX,
                 rng: Callable[[float, float], float] = random.uniform) -> None:
        self._first = first
        self._cap = cap
        self._rng = rng
        self.attempt = 0

    def reset(self) -> None:
        self.attempt = 0

    def next(self) -> float:
        ceiling = min(self._cap, self._first * 2 ** (self.attempt + 1))
        self.attempt = min(self.attempt + 1, 32)
        return min(self._cap, max(self._first, self._rng(ceiling / 2, ceiling)))


# -- commands -----------------------------------------------------------------------------

@attrs.frozen
class Command:
    """One typed line: `kind` is say, to, mentor, who, history, help, quit, nothing or
    unknown; `arg` the rest of the line (for unknown: the complaint)."""

    kind: str
    arg: str = ""


_COMMANDS: Final = {"to", "mentor", "who", "history", "help", "quit"}
_ALIASES: Final = {"exit": "quit", "q": "quit", "w": "who", "m": "mentor", "msg": "to",
                   "?": "help", "h": "help"}
_NEED_TEXT: Final = {"to": "/to NAME TEXT", "mentor": "/mentor TEXT"}


def parse_command(line: str) -> Command:
    text = line.rstrip("\r\n")
    if not text.strip():
        return Command("nothing")
    if text.startswith("//"):
        return Command("say", text[1:])
    if not text.startswith("/"):
        return Command("say", text)
    name, _, rest = text[1:].partition(" ")
    name = _ALIASES.get(name.lower(), name.lower())
    rest = rest.strip()
    if name not in _COMMANDS:
        return Command("unknown", f"unknown command /{name}; /help lists the commands")
    if name in _NEED_TEXT and not rest:
        return Command("unknown", f"usage: {_NEED_TEXT[name]}")
    return Command(name, rest)


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


# -- the session --------------------------------------------------------------------------

@attrs.define
class _Sent:
    event: str
    text: str


@attrs.define
class _Out:
    """A typed request waiting for the room: a message (`sent`) or a history question
    (`label`: whose conversation, for the heading of the answer)."""

    event: str
    data: dict[str, Any]
    sent: _Sent | None = None
    label: str = ""


def _frame(event: str, data: Mapping[str, Any], ref: int | None = None) -> str:
    obj: dict[str, Any] = {"event": event, "data": dict(data)}
    if ref is not None:
        obj["ref"] = ref
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _short(text: str, width: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


class ChatSession:
    """One room as the terminal sees it, across any number of connections. Sans-IO: feed it
    frames (`receive`), typed lines (`line`) and connection changes (`connected`,
    `disconnected`); take what to print (`take_output`) and what to send (`take_frames`).
    `exit_code` is set when the client should stop; `want_reconnect` when this connection
    should be dropped and a new one made (after back-off)."""

    def __init__(self, room_id: int, *, tz: tzinfo | None = None) -> None:
        self.room_id = room_id
        self.roster = Roster()
        self.seqs = SeqTracker()
        self.me: int | None = None
        self.role: str | None = None
        self.room: dict[str, Any] = {}
        self.joined = False  # this connection's join/resume was answered
        self.ever_joined = False
        self.exit_code: int | None = None
        self.want_reconnect = False
        self._tz = tz
        self._output: list[str] = []
        self._control: list[str] = []  # join/resume: sent as soon as connected
        self._queued: list[_Out] = []  # sent once joined
        self._inflight: dict[int, _Sent] = {}
        self._join_ref: int | None = None
        self._ref = 0
        self._asked_history: dict[int, str] = {}

    # -- outputs -------------------------------------------------------------------------

    def take_output(self) -> list[str]:
        out, self._output = self._output, []
        return out

    def take_frames(self) -> list[str]:
        """Frames to send now: the join/resume frame, then (once joined) what was typed."""
        frames, self._control = self._control, []
        if self.joined:
            for out in self._queued:
                ref = self._next_ref()
                if out.sent is not None:
                    self._inflight[ref] = out.sent
                else:
                    self._asked_history[ref] = out.label
                frames.append(_frame(out.event, out.data, ref))
            self._queued = []
        return frames

    def _say(self, *lines: str) -> None:
        self._output.extend(lines)

    def _next_ref(self) -> int:
        self._ref += 1
        return self._ref

    @property
    def viewer(self) -> Viewer:
        return Viewer(self.me, self.roster, self._tz)

    # -- connection changes --------------------------------------------------------------

    def connected(self) -> None:
        """A new connection is open: ask to join, or to resume after the last seq seen."""
        self.joined = False
        self.want_reconnect = False
        self._join_ref = self._next_ref()
        if not self.ever_joined:
            event, data = "room/join", {"room_id": self.room_id}
        else:
            event = "room/rehost" if self.role == "instructor" else "room/rejoin"
            data = {"room_id": self.room_id, "after": self.seqs.last}
        self._control = [_frame(event, data, self._join_ref)]

    def disconnected(self, why: str) -> None:
        was_joined = self.joined
        self.joined = False
        self._control = []
        self._join_ref = None
        self._asked_history.clear()
        if self.exit_code is not None:
            return
        if was_joined or not self.ever_joined:
            self._say(f"! {why}")
        for sent in self._inflight.values():
            self._say(f"! not confirmed before the connection dropped: {_short(sent.text)!r}"
                      " (it shows up after reconnecting if the server stored it)")
        self._inflight.clear()

    def quit(self, code: int = 0) -> None:
        if self.exit_code is None:
            self.exit_code = code

    def fail(self, why: str) -> None:
        """Something retrying cannot fix: say so and stop with exit code 1."""
        if self.exit_code is None:
            self._say(f"! {why}")
            self.quit(1)

    # -- frames from the server ----------------------------------------------------------

    def receive(self, frame: str | bytes) -> None:
        try:
            obj = json.loads(frame)
        except ValueError:
            self._say("! the server sent something that is not JSON; ignored")
            return
        if not isinstance(obj, dict) or not isinstance(obj.get("event"), str):
            return
        event: str = obj["event"]
        data = obj.get("data") if isinstance(obj.get("data"), dict) else {}
        assert isinstance(data, dict)
        ref = obj.get("ref") if isinstance(obj.get("ref"), int) else None
        seq = obj.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            if data.get("room_id", self.room_id) != self.room_id:
                return  # another room's seqs are not ours to track
            if not self.seqs.accept(seq):
                return  # already shown (a resumed connection repeats nothing we count)
        if ref is not None and ref == self._join_ref:
            self._join_answer(event, data)
            return
        if event == "ack":
            if ref is not None:
                self._inflight.pop(ref, None)
            return
        if event == "error":
            self._error(ref, data)
            return
        if event == "message/user":
            self._conversation(ref, data)
            return
        if event == "presence":
            self._presence(data)
            return
        if data.get("room_id") not in (None, self.room_id) and event != "room/update":
            return  # another room's event on a shared connection
        self._say(*format_event(event, data, self.viewer))
        if event == "room/closed":
            self._say("(the room has ended; leaving)")
            self.quit(0)
        elif event == "room/kill" and data.get("user_id") in (None, self.me):
            self.quit(1)

    def _join_answer(self, event: str, data: Mapping[str, Any]) -> None:
        resumed = self.ever_joined
        if event == "error":
            code = str(data.get("code", "error"))
            message = sanitize(str(data.get("message", "")))
            if code == "unavailable":
                self._say(f"! could not join yet: {message}")
                self.want_reconnect = True
            else:
                self._say(f"! could not {'rejoin' if resumed else 'join'} the room: {message}")
                self.quit(1)
            return
        if event != "room/join":
            return
        you = data.get("you") if isinstance(data.get("you"), dict) else {}
        assert isinstance(you, dict)
        self.me = you.get("id") if isinstance(you.get("id"), int) else self.me
        self.role = str(you.get("role") or self.role or "student")
        room = data.get("room")
        if isinstance(room, dict):
            self.room = room
        members = data.get("members")
        if isinstance(members, list):
            self.roster.reset(m for m in members if isinstance(m, dict) and "id" in m)
        self.joined = True
        self.ever_joined = True
        if resumed:
            self._say("* reconnected")
            return
        label = _room_label(self.room) if self.room else f"room {self.room_id}"
        online = sum(m.online for m in self.roster.by_id.values())
        self._say(f"* joined the {label} as {self.role}; {len(self.roster.by_id)} members,"
                  f" {online} online. /help lists the commands.")
        if self.room and self.room.get("open") is False:
            self._say("* this room has ended: its history is read-only")

    def _error(self, ref: int | None, data: Mapping[str, Any]) -> None:
        message = sanitize(str(data.get("message") or data.get("code") or "refused"))
        sent = self._inflight.pop(ref, None) if ref is not None else None
        if ref is not None:
            self._asked_history.pop(ref, None)
        if sent is not None:
            self._say(f"! not sent ({_short(sent.text)!r}): {message}")
        else:
            self._say(f"! {message}")

    def _conversation(self, ref: int | None, data: Mapping[str, Any]) -> None:
        label = self._asked_history.pop(ref, None) if ref is not None else None
        other = data.get("user_id")
        name = label or self.roster.name(other if isinstance(other, int) else None)
        messages = data.get("messages")
        items = [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
        self._say(f"--- private messages with {sanitize(name)} ({len(items)}) ---")
        for item in items:
            inner = item.get("data") if isinstance(item.get("data"), dict) else {}
            assert isinstance(inner, dict)
            self._say(*format_event(str(item.get("event", "")), inner, self.viewer))
        self._say("--- end ---")

    def _presence(self, data: Mapping[str, Any]) -> None:
        user_id = data.get("user_id")
        if data.get("room_id") not in (None, self.room_id) or not isinstance(user_id, int):
            return
        online = bool(data.get("online"))
        name = str(data.get("name") or "")
        if self.roster.presence(user_id, name, online) and user_id != self.me:
            shown = sanitize(name or self.roster.name(user_id))
            self._say(f"* {shown} is {'online' if online else 'offline'}")

    # -- typed lines ---------------------------------------------------------------------

    def line(self, text: str) -> None:
        command = parse_command(text)
        kind, arg = command.kind, command.arg
        if kind == "nothing":
            return
        if kind == "unknown":
            self._say(f"! {arg}")
        elif kind == "help":
            self._say(*HELP.splitlines())
        elif kind == "quit":
            self.quit(0)
        elif kind == "who":
            if not self.ever_joined:
                self._say("! not in the room yet")
            else:
                self._say(*self.roster.lines(self.me))
        elif kind == "say":
            self._send("message", {"text": arg}, arg)
        elif kind == "mentor":
            if self.role == "instructor":
                self._say("! /mentor is for students; use /to NAME TEXT")
            else:
                self._send("message/to_mentor", {"text": arg}, arg)
        elif kind == "to":
            self._to(arg)
        elif kind == "history":
            self._history(arg)

    def end_of_input(self) -> None:
        self.quit(0)

    def _send(self, event: str, data: dict[str, Any], text: str) -> None:
        if not self.joined:
            self._say("(not connected: will send when back)")
        self._queued.append(_Out(event, {"room_id": self.room_id, **data}, _Sent(event, text)))

    def _to(self, arg: str) -> None:
        if not self.ever_joined:
            self._say("! not in the room yet")
            return
        if self.role != "instructor":
            self._say("! only the instructor sends private messages to students;"
                      " use /mentor TEXT to write to the instructor")
            return
        found = self.roster.split_target(arg, exclude=self.me)
        if isinstance(found, str):
            self._say(f"! {found}")
            return
        member, text = found
        if not text:
            self._say("! usage: /to NAME TEXT")
            return
        self._send("message/to_client", {"user_id": member.id, "text": text}, text)

    def _history(self, arg: str) -> None:
        if not self.ever_joined:
            self._say("! not in the room yet")
            return
        data: dict[str, Any] = {"room_id": self.room_id}
        label = "the instructor"
        if self.role == "instructor":
            if not arg:
                self._say("! usage: /history NAME")
                return
            found = self.roster.find(arg, exclude=self.me)
            if isinstance(found, str):
                self._say(f"! {found}")
                return
            data["user_id"] = found.id
            label = found.display_name
        self._queued.append(_Out("message/user", data, label=label))


# -- line input ---------------------------------------------------------------------------

class LineSplitter:
    """Bytes as they come from a terminal or pipe -> complete text lines (UTF-8; bad
    bytes become U+FFFD). `finish` returns a last line that had no newline."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""

    def feed(self, chunk: bytes) -> list[str]:
        self._partial += self._decoder.decode(chunk)
        *lines, self._partial = self._partial.split("\n")
        return [line.rstrip("\r") for line in lines]

    def finish(self) -> list[str]:
        rest = self._partial + self._decoder.decode(b"", final=True)
        self._partial = ""
        return [rest] if rest else []


class _Stdin:
    """Lines from fd 0 with os.read: no Python buffer between the menus and the chat, and
    no lock held by a reader thread when the process exits."""

    def __init__(self, fd: int = 0) -> None:
        self._fd = fd
        self._split = LineSplitter()
        self._lines: list[str] = []
        self.eof = False

    def _fill(self) -> None:
        while not self._lines and not self.eof:
            try:
                chunk = os.read(self._fd, 4096)
            except InterruptedError:
                continue
            if chunk:
                self._lines.extend(self._split.feed(chunk))
            else:
                self.eof = True
                self._lines.extend(self._split.finish())

    def readline(self) -> str | None:
        """The next line (blocking), None at end of input."""
        self._fill()
        return self._lines.pop(0) if self._lines else None


# -- HTTP (blocking, before trio starts) --------------------------------------------------

class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _normal_server(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url


def api_call(server: str, method: str, path: str, *, token: str | None = None,
             body: Mapping[str, Any] | None = None, timeout: float = HTTP_TIMEOUT) -> Any:
    """One JSON API call; ApiError for an error answer or an unreachable server."""
    headers = {"Accept": "application/json", "User-Agent": "classroom-terminal"}
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(server + "/api/v1" + path, data=payload, method=method,
                                     headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            raw = exc.read()
        code, message = "http_error", f"HTTP {exc.code} {exc.reason}"
        try:
            error = json.loads(raw)["error"]
            code, message = str(error["code"]), str(error["message"])
        except (ValueError, KeyError, TypeError):
            pass
        raise ApiError(exc.code, code, message) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ApiError(0, "unreachable", f"cannot reach {server}: {reason}") from None
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        raise ApiError(0, "bad_answer", f"{server} did not answer with JSON") from None


def chat_url_for(server: str, health: Mapping[str, Any] | None) -> str:
    """The WebSocket address: healthz's `chat_url` when the server tells it (with a
    wildcard host replaced by the server's own), else the server's host on port 8001."""
    parts = urllib.parse.urlsplit(server)
    host = parts.hostname or "127.0.0.1"
    told = health.get("chat_url") if health else None
    if isinstance(told, str) and told.startswith(("ws://", "wss://")):
        chat = urllib.parse.urlsplit(told)
        if chat.hostname in ("0.0.0.0", "::", ""):
            netloc = f"[{host}]" if ":" in host else host
            if chat.port:
                netloc += f":{chat.port}"
            return urllib.parse.urlunsplit(chat._replace(netloc=netloc))
        return told
    scheme = "wss" if parts.scheme == "https" else "ws"
    netloc = f"[{host}]" if ":" in host else host
    return f"{scheme}://{netloc}:{DEFAULT_CHAT_PORT}/ws"


def _items(payload: Any, *keys: str) -> list[dict[str, Any]]:
    """A list answer, bare or under one of `keys`."""
    if isinstance(payload, dict):
        for key in keys:
            if isinstance(payload.get(key), list):
                payload = payload[key]
                break
    if not isinstance(payload, list):
        return []
    return [item for item in payload if isinstance(item, dict)]


def open_rooms(sessions: Any, discussions: Any) -> list[dict[str, Any]]:
    """The rooms one can join now: open live sessions first, then open discussions. An
    item may be a room or wrap one ({"room": {...}, ...})."""
    rooms: list[dict[str, Any]] = []
    seen: set[int] = set()
    for payload, keys in ((sessions, ("sessions", "rooms")),
                          (discussions, ("discussions", "rooms"))):
        for item in _items(payload, *keys):
            room = item["room"] if isinstance(item.get("room"), dict) else item
            room_id = room.get("id")
            is_open = room.get("open", room.get("ended_at") is None)
            if isinstance(room_id, int) and is_open and room_id not in seen:
                seen.add(room_id)
                rooms.append(room)
    rooms.sort(key=lambda r: (r.get("kind") != "live", -int(r["id"])))
    return rooms


def class_lines(classes: Sequence[Mapping[str, Any]]) -> list[str]:
    out = []
    for i, c in enumerate(classes, 1):
        teacher = c.get("instructor")
        by = ""
        if c.get("role") != "instructor" and isinstance(teacher, Mapping):
            by = f", {sanitize(str(teacher.get('display_name', '')))}"
        out.append(f"  {i}. {sanitize(str(c.get('name', '?')))} ({c.get('role', '?')}{by})")
    return out


def room_lines(rooms: Sequence[Mapping[str, Any]]) -> list[str]:
    return [f"  {i}. {_room_label(r)} (room {r.get('id')})" for i, r in enumerate(rooms, 1)]


def pick(answer: str, count: int) -> int | None:
    """A 1-based menu answer -> 0-based index, None if it is not one."""
    answer = answer.strip().rstrip(".")
    if answer.isdigit() and 1 <= int(answer) <= count:
        return int(answer) - 1
    return None


# -- the program --------------------------------------------------------------------------

class _Quit(Exception):
    """End of input or a 'q' at a menu."""


class _Terminal:
    def __init__(self, stdin: _Stdin) -> None:
        self.stdin = stdin

    def say(self, *lines: str) -> None:
        if lines:
            sys.stdout.write("".join(line + "\n" for line in lines))
            sys.stdout.flush()

    def ask(self, prompt: str) -> str:
        sys.stdout.write(prompt)
        sys.stdout.flush()
        line = self.stdin.readline()
        if line is None:
            raise _Quit
        return line

    def choose(self, prompt: str, count: int) -> int:
        while True:
            answer = self.ask(f"{prompt} [1-{count}, q to quit]: ")
            if answer.strip().lower() in ("q", "/quit", "quit"):
                raise _Quit
            index = pick(answer, count)
            if index is not None:
                return index
            self.say(f"  please type a number from 1 to {count}")


def run_terminal_client(server_url: str, username: str | None,
                        chat_url: str | None = None) -> int:
    """The `classroom chat` command; returns the exit code."""
    terminal = _Terminal(_Stdin())
    try:
        return _run(terminal, _normal_server(server_url), username, chat_url)
    except (_Quit, EOFError, KeyboardInterrupt):
        terminal.say("")
        return 0
    except BaseExceptionGroup as group:  # a Ctrl-C before the signal handler was set up
        if group.subgroup(KeyboardInterrupt) is None:
            raise
        terminal.say("")
        return 0
    except ApiError as exc:
        print(f"classroom chat: {exc.message}", file=sys.stderr, flush=True)
        return 1


def _run(terminal: _Terminal, server: str, username: str | None,
         chat_url: str | None) -> int:
    while not username:
        username = terminal.ask("Username: ").strip()
    password = getpass.getpass("Password: ")
    try:
        login = api_call(server, "POST", "/login",
                         body={"username": username, "password": password})
    except ApiError as exc:
        print(f"classroom chat: login failed: {exc.message}", file=sys.stderr, flush=True)
        return 1
    del password
    token = str(login["token"])
    user = login.get("user", {})
    terminal.say(f"Signed in as {sanitize(str(user.get('display_name', username)))}.")
    if chat_url is None:
        try:
            health = api_call(server, "GET", "/healthz")
        except ApiError:
            health = None
        chat_url = chat_url_for(server, health if isinstance(health, dict) else None)

    classes = _items(api_call(server, "GET", "/classrooms", token=token), "classrooms")
    if not classes:
        terminal.say("You are not in any class yet: join one on the website first.")
        return 1
    while True:
        terminal.say("Your classes:", *class_lines(classes))
        chosen = classes[terminal.choose("Class", len(classes))]
        class_id = int(chosen["id"])
        missing: list[str] = []
        sessions = _room_list(server, f"/classrooms/{class_id}/sessions", token, missing)
        discussions = _room_list(server, f"/classrooms/{class_id}/discussions", token,
                                 missing)
        rooms = open_rooms(sessions, discussions)
        if rooms:
            break
        if len(missing) == 2:
            terminal.say("This server does not list rooms (" + ", ".join(missing) + ").")
            return 1
        terminal.say(f"No live session or discussion is open in "
                     f"{sanitize(str(chosen.get('name')))} right now.")
        if len(classes) == 1:
            return 1
    terminal.say(f"Rooms of {sanitize(str(chosen.get('name')))}:", *room_lines(rooms))
    room = rooms[terminal.choose("Room", len(rooms))]
    terminal.say(f"Connecting to {chat_url} …")
    session = ChatSession(int(room["id"]))
    code = trio.run(_chat, terminal, session, chat_url, token)
    return code


def _room_list(server: str, path: str, token: str, missing: list[str]) -> Any:
    """One room listing; an endpoint this server lacks (404) counts as no rooms."""
    try:
        return api_call(server, "GET", path, token=token)
    except ApiError as exc:
        if exc.status != 404:
            raise
        missing.append(f"GET /api/v1{path}: {exc.message}")
        return None


# -- the chat loop (trio) -----------------------------------------------------------------

class _Wake:
    """Something changed (a typed line, a quit): wake whoever waits."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def poke(self) -> None:
        self._event.set()
        self._event = trio.Event()

    async def wait(self) -> None:
        await self._event.wait()


async def _chat(terminal: _Terminal, session: ChatSession, chat_url: str, token: str) -> int:
    wake = _Wake()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_read_lines, terminal, session, wake)
        nursery.start_soon(_on_interrupt, session, wake)
        code = await _connect_loop(terminal, session, chat_url, token, wake)
        nursery.cancel_scope.cancel()
    terminal.say(*session.take_output())
    if code == 0:
        terminal.say("* left the room")
    return code


async def _read_lines(terminal: _Terminal, session: ChatSession, wake: _Wake) -> None:
    while session.exit_code is None:
        line = await trio.to_thread.run_sync(terminal.stdin.readline, abandon_on_cancel=True)
        if line is None:
            session.end_of_input()
        else:
            session.line(line)
        terminal.say(*session.take_output())
        wake.poke()


async def _on_interrupt(session: ChatSession, wake: _Wake) -> None:
    """Ctrl-C: leave cleanly (close the connection politely, exit 0)."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            session.quit(0)
            wake.poke()


async def _connect_loop(terminal: _Terminal, session: ChatSession, chat_url: str,
                        token: str, wake: _Wake) -> int:
    backoff = Backoff()
    headers = [(b"Authorization", f"Bearer {token}".encode())]
    while session.exit_code is None:
        why = "connection lost"
        try:
            async with open_websocket_url(chat_url, extra_headers=headers,
                                          connect_timeout=CONNECT_TIMEOUT,
                                          disconnect_timeout=CLOSE_TIMEOUT) as ws:
                session.connected()
                why = await _converse(terminal, session, ws, wake)
        except ConnectionRejected as exc:
            if exc.status_code in FATAL_HANDSHAKE:
                session.fail(FATAL_HANDSHAKE[exc.status_code])
            why = f"the chat server refused the connection (HTTP {exc.status_code})"
        except DisconnectionTimeout:
            pass  # closing a connection that had already died: `why` says how
        except HandshakeError as exc:
            why = f"cannot reach the chat server at {chat_url} ({_cause(exc)})"
        except ConnectionClosed as exc:
            why = _closed_why(exc)
        except OSError as exc:
            why = f"network error: {exc}"
        if session.joined:
            backoff.reset()
        session.disconnected(why)
        terminal.say(*session.take_output())
        if session.exit_code is not None:
            break
        delay = backoff.next()
        terminal.say(f"  (reconnecting in {delay:.1f} s)")
        with trio.move_on_after(delay):
            while session.exit_code is None:
                await wake.wait()
    return session.exit_code if session.exit_code is not None else 0


def _cause(exc: HandshakeError) -> str:
    if isinstance(exc, ConnectionTimeout):
        return "timed out"
    cause = exc.__cause__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return str(cause or exc) or type(cause or exc).__name__


def _closed_why(exc: ConnectionClosed) -> str:
    reason = exc.reason
    if reason is None or reason.code == CLOSE_ABNORMAL:
        return "connection lost"
    if reason.code == CLOSE_TRY_AGAIN_LATER:
        return "the server dropped us for falling behind; catching up"
    if reason.code == CLOSE_GOING_AWAY:
        return "the chat server is going away (restarting?)"
    text = f": {sanitize(reason.reason)}" if reason.reason else ""
    return f"connection closed ({reason.code}{text})"


def _first_leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


class _Dead(Exception):
    """No pong in time: the connection is gone even if TCP has not noticed."""


async def _converse(terminal: _Terminal, session: ChatSession, ws: WebSocketConnection,
                    wake: _Wake) -> str:
    """Run one connection until the session quits or asks for a new connection; raises
    ConnectionClosed when the server goes away. Returns why it ended."""
    async def reader() -> None:
        while True:
            frame = await ws.get_message()
            session.receive(frame)
            terminal.say(*session.take_output())
            wake.poke()

    async def writer() -> None:
        while True:
            for frame in session.take_frames():
                await ws.send_message(frame)
            if session.exit_code is not None or session.want_reconnect:
                return
            await wake.wait()

    async def pinger() -> None:
        while True:
            await trio.sleep(PING_INTERVAL)
            with trio.move_on_after(PING_TIMEOUT) as waited:
                await ws.ping()
            if waited.cancelled_caught:
                raise _Dead

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            nursery.start_soon(pinger)
            await writer()
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        closed, rest = group.split(ConnectionClosed)
        if rest is not None:
            dead, rest = rest.split(_Dead)
            if dead is not None and rest is None:
                return "the chat server stopped answering"
            raise
        assert closed is not None
        raise _first_leaf(closed) from None
    if session.exit_code is not None:
        return "leaving"
    return "reconnecting"
