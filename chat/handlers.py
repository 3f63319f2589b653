"""What each live event a client sends does. Rules come from `classroom/` (rules.py for
who, live.py for the routed events); this module only wires them to the hub."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import trio

from classroom import Services, StateWrite, limits
from classroom.errors import Forbidden, Invalid, NotFound
from classroom.lab import CODE_EVENTS
from classroom.live import SPECS, Audience, EventSpec, Keep, user_id_of
from classroom.rooms import RoomAccess
from classroom.rules import Action, Role, check
from classroom.views import event_view, room_view
from protocol.envelope import Envelope

from .client import Client
from .fanout import LiveRoom
from .hub import RoomHub

Data = Mapping[str, Any]
Handler = Callable[[Client, Envelope], Awaitable[None]]

REMOVED: Final = "the instructor removed you from this room"
# Markdown rendering and lesson imports run in threads, two at most at once, on a limiter of
# their own: on trio's default one they queued the SQLite storage's statements behind them
# (a 200 KB preview is about a second of CPU, anyone may make a class to send them), and
# more threads would only take more of the GIL from the event loop.
HEAVY_WORK: Final = trio.CapacityLimiter(2)
# Events a client must have joined the room for (all but the ones that create or join).
_JOIN_EVENTS: Final = {"room/join": None, "room/rejoin": Role.STUDENT,
                       "room/rehost": Role.INSTRUCTOR}


def _int(data: Data, key: str, *, required: bool = True, default: int = 0) -> int:
    value = data.get(key)
    if value is None and not required:
        return default
    if key.endswith("_id"):
        return limits.record_id(value, key, minimum=0)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limits.MAX_ID:
        raise Invalid(f"{key} must be a non-negative integer")
    return value


class Dispatcher:
    def __init__(self, services: Services, hub: RoomHub) -> None:
        self._services = services
        self._hub = hub
        self._handlers: dict[str, Handler] = {
            "room/create": self._create,
            "room/join": self._join,
            "room/rejoin": self._join,
            "room/rehost": self._join,
            "room/leave": self._leave,
            "room/kill": self._kill,
            "room/close": self._close,
            "message/user": self._conversation,
            "steps/table": self._steps_table,
            "steps/preview": self._steps_preview,
            "sharing/code": self._shared_code,
            "class/watch": self._watch,
        }

    async def dispatch(self, client: Client, envelope: Envelope) -> None:
        """Run one event. Raises ClassroomError for a refused one (the caller answers with
        an `error` event to this client only)."""
        handler = self._handlers.get(envelope.event)
        if handler is not None:
            await handler(client, envelope)
        elif envelope.event in SPECS:
            await self._routed(client, envelope, SPECS[envelope.event])
        else:
            raise Invalid(f"unknown event {envelope.event!r}")

    def _joined(self, client: Client, data: Data) -> tuple[LiveRoom, RoomAccess]:
        room_id = _int(data, "room_id")
        joined = client.rooms.get(room_id)
        live = self._hub.live(room_id)
        if joined is None or live is None:
            raise NotFound(f"join room {room_id} first (room/join)")
        if client.user.id in live.banned:
            # Removed on another server while this connection's leaving was on its way.
            raise Forbidden(REMOVED)
        return live, joined.access

    # -- rooms ---------------------------------------------------------------------------

    async def _create(self, client: Client, envelope: Envelope) -> None:
        data = envelope.data
        kind = data.get("kind", "live")
        topic = data.get("topic", "")
        if not isinstance(kind, str) or not isinstance(topic, str):
            raise Invalid("kind and topic must be strings")
        room = await self._services.rooms.open(client.user, _int(data, "classroom_id"), kind,
                                               topic)
        update = {"room": room_view(room)}
        client.send("room/update", update, ref=envelope.ref)
        for member, _ in await self._services.rooms.members(room.classroom_id):
            for other in self._hub.by_user.get(member.id, ()):
                if other is not client:
                    other.send("room/update", update)

    async def _watch(self, client: Client, envelope: Envelope) -> None:
        await self._hub.watch.watch(client, _int(envelope.data, "classroom_id"), envelope.ref)

    async def _join(self, client: Client, envelope: Envelope) -> None:
        data = envelope.data
        room_id = _int(data, "room_id")
        resuming = envelope.event != "room/join"
        after = _int(data, "after", required=resuming)
        access = await self._hub.access(client.user, room_id)
        needed = _JOIN_EVENTS[envelope.event]
        if needed is not None and access.role != needed:
            raise Forbidden(f"{envelope.event} is for the {needed.value}; use room/join")
        await self._hub.attach(client, access, after, envelope.ref)

    async def _leave(self, client: Client, envelope: Envelope) -> None:
        live, _ = self._joined(client, envelope.data)
        await self._hub.detach(live.id, client)
        # Answered once stored (with whatever departures wait meanwhile), as a join is:
        # whoever sees the answer sees the attendance. (A database down: written later.)
        await self._hub.departures.write()
        client.ack(envelope.ref)

    async def _kill(self, client: Client, envelope: Envelope) -> None:
        live, access = self._joined(client, envelope.data)
        target = user_id_of(envelope.data)
        await self._services.rooms.kick(access, target)
        await self._hub.remove(live, target)
        client.ack(envelope.ref)

    async def _close(self, client: Client, envelope: Envelope) -> None:
        live, access = self._joined(client, envelope.data)
        check(access.role, Action.MANAGE_SESSION)
        if not await self._hub.close(live, access, client.user):
            raise Invalid("this room has already ended")
        client.ack(envelope.ref)

    # -- reading -------------------------------------------------------------------------

    async def _conversation(self, client: Client, envelope: Envelope) -> None:
        live, access = self._joined(client, envelope.data)
        raw = envelope.data.get("user_id")
        other_id = None if raw is None else user_id_of(envelope.data)
        other, events = await self._services.rooms.conversation(access, client.user, other_id)
        client.send("message/user", {"room_id": live.id, "user_id": other,
                                     "messages": [event_view(e) for e in events]},
                    ref=envelope.ref)

    async def _steps_table(self, client: Client, envelope: Envelope) -> None:
        live, access = self._joined(client, envelope.data)
        table = await self._services.lab.grid(access, live.online())
        client.send("steps/table", table, ref=envelope.ref)

    async def _steps_preview(self, client: Client, envelope: Envelope) -> None:
        """A document split into steps for the instructor to edit before `steps/all`;
        nothing is stored or sent to anyone else."""
        live, access = self._joined(client, envelope.data)
        check(access.role, Action.RUN_ROOM)
        cleaned = await trio.to_thread.run_sync(SPECS["steps/import"].clean, envelope.data,
                                                limiter=HEAVY_WORK)
        steps = cleaned["steps"]
        client.send("steps/preview", {"room_id": live.id, "steps": steps}, ref=envelope.ref)

    async def _shared_code(self, client: Client, envelope: Envelope) -> None:
        """A student's latest shared files (instructor only)."""
        live, access = self._joined(client, envelope.data)
        student = user_id_of(envelope.data)
        files = await self._services.lab.code(access, student)
        client.send("sharing/code", {"room_id": live.id, "user_id": student, "files": files},
                    ref=envelope.ref)

    # -- everything in classroom.live.SPECS ----------------------------------------------

    async def _routed(self, client: Client, envelope: Envelope, spec: EventSpec) -> None:
        live, access = self._joined(client, envelope.data)
        check(access.role, spec.action)
        if not live.room.is_open:
            raise Invalid("this room has ended; its history stays readable")
        relay = self._hub.relay
        if (relay.bus_wanted and not relay.bus_live and access.role == Role.STUDENT
                and await self._services.rooms.is_banned(live.id, client.user.id)):
            # The bus is down, so kicks on other servers do not reach this one: ask.
            live.banned.add(client.user.id)
            raise Forbidden(REMOVED)
        if (access.role == Role.STUDENT and await self._services.classes.role_of(
                client.user, live.room.classroom_id) is None):
            # Removed from the class (or left it) since joining: no more writing here. The
            # role is cached per process and dropped on every server within a second.
            await self._hub.detach(live.id, client)
            raise NotFound("you are no longer a member of this class")
        if spec.heavy:
            data = await trio.to_thread.run_sync(spec.clean, envelope.data, limiter=HEAVY_WORK)
        else:
            data = spec.clean(envelope.data)
        recipient: int | None = None
        if spec.audience is Audience.INSTRUCTOR:
            recipient = access.instructor_id
        elif spec.audience is Audience.TARGET:
            recipient = data["user_id"]
            await self._services.rooms.check_private_target(access, recipient)
        state: tuple[StateWrite, ...] = ()
        if spec.name in CODE_EVENTS:
            # Merged before storing, so a share past the limits is refused, nothing stored.
            lab = self._services.lab
            files = await lab.merged_code(live.id, client.user.id, spec.name, data["files"])
            state = lab.code_state(client.user.id, files)
        elif spec.state is not None:
            state = (self._state_write(client, spec, data, recipient),)
        stored = await self._hub.publish(live, spec.emitted, client.user, recipient, data,
                                         state=state, client_id=envelope.id)
        client.ack(envelope.ref, seq=stored.seq)

    def _state_write(self, client: Client, spec: EventSpec, data: dict[str, Any],
                     recipient: int | None) -> StateWrite:
        assert spec.state is not None
        rule = spec.state
        name = rule.name(data)
        if rule.keep is Keep.CLEAR:
            return StateWrite(0, name, None)
        owner = {Keep.ROOM: 0, Keep.SENDER: client.user.id,
                 Keep.TARGET: recipient or 0}[rule.keep]
        return StateWrite(owner, name, json.dumps({"event": spec.emitted, **data},
                                                  ensure_ascii=False))
