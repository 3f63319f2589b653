"""One room as the terminal sees it (`ChatSession`), with what it decides by: typed
commands (`parse_command`), the last seq seen (`SeqTracker`) and the delays between
reconnects (`Backoff`). Sans-IO: tested without sockets."""

from __future__ import annotations

import json
import random
import secrets
from collections.abc import Callable, Mapping
from datetime import tzinfo
from typing import Any, Final

import attrs

from protocol.envelope import encode_data

from .display import Roster, Viewer, _room_label, format_event, sanitize

BACKOFF_FIRST: Final = 0.5
BACKOFF_MAX: Final = 10.0


HELP: Final = """\
Commands:
  TEXT               send TEXT to the room (start with // to send a line beginning with /)
  /to NAME TEXT      (instructor) private message to one student, by username or name
  /mentor TEXT       (student) private message to the instructor
  /who               who is in the room, and who is online
  /history [NAME]    the private conversation with NAME (students: with the instructor)
  /help              this list
  /quit              leave (so do Ctrl-D and Ctrl-C)"""



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


# -- the session --------------------------------------------------------------------------

@attrs.define
class _Sent:
    event: str
    text: str
    out: _Out | None = None  # what to send again if the connection drops before the ack


@attrs.define
class _Out:
    """A typed request waiting for the room: a message (`sent`) or a history question
    (`label`: whose conversation, for the heading of the answer)."""

    event: str
    data: dict[str, Any]
    sent: _Sent | None = None
    label: str = ""
    # The event's own id (messages): a resend after a dropped connection carries the same
    # one, so the server stores it once however many times it arrives.
    id: str | None = None


def _frame(event: str, data: Mapping[str, Any], ref: int | None = None,
           id: str | None = None) -> str:
    obj: dict[str, Any] = {"event": event, "data": dict(data)}
    if ref is not None:
        obj["ref"] = ref
    if id is not None:
        obj["id"] = id
    return encode_data(obj)


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
        # Event ids: unique to this client run, then a counter.
        self._id_prefix = secrets.token_hex(8)
        self._ids = 0

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
                frames.append(_frame(out.event, out.data, ref, out.id))
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
        resend = [sent.out for sent in self._inflight.values() if sent.out is not None]
        for sent in self._inflight.values():
            self._say(f"! not confirmed before the connection dropped: {_short(sent.text)!r}"
                      " (sent again after reconnecting; stored once)")
        self._inflight.clear()
        self._queued[:0] = resend

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
            count = data.get("online_count")
            self.roster.reset((m for m in members if isinstance(m, dict) and "id" in m),
                              count if isinstance(count, int) else None)
        self.joined = True
        self.ever_joined = True
        if resumed:
            self._say("* reconnected")
            return
        label = _room_label(self.room) if self.room else f"room {self.room_id}"
        counts = self.roster.counts(whole_class=self.role == "instructor")
        self._say(f"* joined the {label} as {self.role}; {counts}. /help lists the commands.")
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
        changes = data.get("changes")
        if data.get("room_id") not in (None, self.room_id) or not isinstance(changes, list):
            return
        count = data.get("online_count")
        if isinstance(count, int):
            self.roster.online_count = count
        for change in changes:
            user_id = change.get("user_id") if isinstance(change, Mapping) else None
            if not isinstance(user_id, int):
                continue
            online = bool(change.get("online"))
            name = str(change.get("name") or "")
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
                self._say(*self.roster.lines(self.me, whole_class=self.role == "instructor"))
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
        self._ids += 1
        out = _Out(event, {"room_id": self.room_id, **data}, id=f"{self._id_prefix}-{self._ids}")
        out.sent = _Sent(event, text, out)
        self._queued.append(out)

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
