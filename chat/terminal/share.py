"""`classroom share DIR --server URL [--room N]`: a student's working directory shared live with
the instructor of a live session.

Logs in like `classroom chat`, joins the room, and while the room's sharing is on sends DIR's
files (`sharing/code_send`) and then, as files change (watchfiles' `awatch`, on anyio, so
under trio), only what changed or went (`sharing/code_update`). While sharing is off it sends
nothing and waits. It honours the room's ignore settings (names, dirs, extensions) and the
share limits, and says which files it skipped and why. The connection comes back by itself
(the chat client's back-off) and resumes from the last seq seen; `room/closed` ends it (exit
0), a removal too (exit 1).

Like the chat client it imports nothing of the server: the limits below are the protocol's.
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import attrs
import trio
import watchfiles
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from classroom import limits
from classroom.errors import Invalid

from .connection import (
    CLOSE_TIMEOUT,
    CONNECT_TIMEOUT,
    FATAL_HANDSHAKE,
    MAX_MESSAGE,
    _closed_why,
)
from .console import _Quit, _Stdin, _Terminal
from .display import sanitize
from .http import ApiError, _items, _normal_server, api_call
from .program import check_server, find_chat_url, sign_in
from .session import Backoff, _frame

# The protocol's share limits (DESIGN.md: files per share, total share size).
MAX_FILES: Final = 50
MAX_BYTES: Final = 512 * 1024
MAX_NAME: Final = 255
# Never shared, whatever the room says: tools' own folders.
ALWAYS_SKIPPED: Final = frozenset({".git", ".hg", ".svn", "__pycache__", "node_modules",
                                   ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache"})
# Changes closer together than this go out as one update.
DEBOUNCE_MS: Final = 300


@attrs.frozen
class IgnoreRules:
    """The room's `settings` as parsed by the server: names, dirs and extensions."""

    names: tuple[str, ...] = ()
    dirs: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()

    @classmethod
    def of(cls, settings: Mapping[str, Any] | None) -> IgnoreRules:
        def strings(key: str) -> tuple[str, ...]:
            value = (settings or {}).get(key)
            return tuple(v for v in value if isinstance(v, str) and v) if isinstance(
                value, list) else ()
        return cls(strings("names"), strings("dirs"), strings("extensions"))

    def skips_dir(self, relative: str) -> bool:
        name = relative.rsplit("/", 1)[-1]
        return any(d in (name, relative) or fnmatch.fnmatchcase(name, d) for d in self.dirs)

    def skips_file(self, relative: str) -> bool:
        name = relative.rsplit("/", 1)[-1]
        return (any(name.endswith(ext) for ext in self.extensions)
                or any(fnmatch.fnmatchcase(name, n) or fnmatch.fnmatchcase(relative, n)
                       for n in self.names))


@attrs.frozen
class Scan:
    files: dict[str, str]  # relative path -> text
    skipped: tuple[tuple[str, str], ...]  # (relative path, why)


def _readable_name(name: str) -> bool:
    """Whether the server takes it as a shared file's name (it refuses the whole share
    otherwise)."""
    try:
        limits.file_name(name, MAX_NAME)
    except Invalid:
        return False
    return True


def scan(root: Path, rules: IgnoreRules) -> Scan:
    """DIR's files as they may be shared: ignored ones left out, then the limits applied in
    name order (so the same files stay in when one more is added)."""
    candidates: list[tuple[str, Path]] = []
    skipped: list[tuple[str, str]] = []
    for folder, dirs, names in os.walk(root):
        base = Path(folder).relative_to(root).as_posix()
        prefix = "" if base == "." else base + "/"
        kept = []
        for d in sorted(dirs):
            if d in ALWAYS_SKIPPED:
                continue
            if rules.skips_dir(prefix + d):
                skipped.append((prefix + d + "/", "ignored by the room's settings"))
            else:
                kept.append(d)
        dirs[:] = kept
        for name in sorted(names):
            relative = prefix + name
            path = Path(folder) / name
            if rules.skips_file(relative):
                skipped.append((relative, "ignored by the room's settings"))
            elif path.is_symlink() or not path.is_file():
                skipped.append((relative, "not a regular file"))
            elif len(relative) > MAX_NAME:
                skipped.append((relative, f"name longer than {MAX_NAME} characters"))
            elif not _readable_name(relative):
                skipped.append((ascii(relative), "control or invisible characters in its name"))
            else:
                candidates.append((relative, path))
    files: dict[str, str] = {}
    total = 0
    for relative, path in sorted(candidates):
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_BYTES + 1)
        except OSError as exc:
            skipped.append((relative, f"cannot read it ({exc.strerror})"))
            continue
        if len(data) > MAX_BYTES:
            skipped.append((relative, f"larger than the share limit ({MAX_BYTES // 1024} KiB)"))
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            skipped.append((relative, "not UTF-8 text"))
            continue
        if len(files) >= MAX_FILES:
            skipped.append((relative, f"more than {MAX_FILES} files"))
            continue
        if total + len(data) > MAX_BYTES:
            skipped.append((relative, f"the share limit ({MAX_BYTES // 1024} KiB in all) "
                                      "is reached"))
            continue
        total += len(data)
        files[relative] = text
    return Scan(files, tuple(sorted(skipped)))


def changes(before: Mapping[str, str], after: Mapping[str, str]) -> list[dict[str, str]]:
    """What a `sharing/code_update` carries: new and changed files, and deleted ones."""
    out = [{"filename": name, "status": "new" if name not in before else "changed",
            "content": text} for name, text in after.items() if before.get(name) != text]
    out += [{"filename": name, "status": "deleted", "content": ""}
            for name in before if name not in after]
    return sorted(out, key=lambda f: f["filename"])


class _Retry(Exception):
    """The server could not take us now (its database is down): come back later."""


class _Leave(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Sharer:
    """One DIR shared in one room, across connections."""

    def __init__(self, root: Path, room_id: int, say: Callable[[str], None]) -> None:
        self.root = root
        self.room_id = room_id
        self.say = say
        self.rules = IgnoreRules()
        self.sharing = False
        self.sent: dict[str, str] | None = None  # what the instructor has; None: send all
        self.seen_seq = 0
        self.joined = False
        self._last_skipped: tuple[tuple[str, str], ...] | None = None
        self._ref = 0
        self._join_ref = 0
        self._share_refs: set[int] = set()
        self._lock = trio.Lock()
        self.changed = trio.Event()
        self._retry_at: float | None = None  # rate-limited: share again at this trio time
        self.blocked = False  # over the room's storage quota: share no more

    def _next_ref(self) -> int:
        self._ref += 1
        return self._ref

    async def converse(self, ws: WebSocketConnection) -> None:
        """One connection: join (or resume), then follow the room and the directory until
        the connection drops (ConnectionClosed) or the room ends (_Leave)."""
        self._join_ref = self._next_ref()
        self.sharing = False  # not known on this connection until the join answer says
        data: dict[str, Any] = {"room_id": self.room_id}
        if self.joined:
            data["after"] = self.seen_seq
        await ws.send_message(_frame("room/join", data, self._join_ref))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow_files, ws)
            while True:
                await self._receive(ws, await ws.get_message())

    async def _follow_files(self, ws: WebSocketConnection) -> None:
        while True:
            await self.changed.wait()
            self.changed = trio.Event()
            if self._retry_at is not None:
                await trio.sleep_until(self._retry_at)
                self._retry_at = None
            if self.sharing:
                await self.share(ws)

    async def _receive(self, ws: WebSocketConnection, raw: str | bytes) -> None:
        try:
            frame = json.loads(raw)
            event, data = str(frame["event"]), frame.get("data") or {}
        except (ValueError, KeyError, TypeError):
            return
        ref = frame.get("ref")
        if event == "room/join" and ref == self._join_ref:
            await self._joined(ws, data)
        elif event == "error":
            message = sanitize(str(data.get("message", "refused")))
            if ref == self._join_ref:
                if data.get("code") == "unavailable":
                    raise _Retry
                self.say(f"cannot join room {self.room_id}: {message}")
                raise _Leave(1)
            if ref in self._share_refs:
                self._share_refs.discard(ref)
                self.sent = None  # the instructor may lack anything: send it all next time
                self.say(f"the server refused the share: {message}")
                code = data.get("code")
                if code == "rate_limited":
                    wait = data.get("retry_after")
                    delay = float(wait) if isinstance(wait, int | float) else 1.0
                    self._retry_at = trio.current_time() + max(0.5, delay)
                    self.changed.set()
                elif code == "quota_exceeded":
                    self.blocked = True
                    self.say("no more sharing in this session: ask the instructor")
        elif event == "ack":
            self._share_refs.discard(ref)
        elif event == "room/kill" and data.get("room_id") == self.room_id:
            self.say("the instructor removed you from this room")
            raise _Leave(1)
        elif isinstance(frame.get("seq"), int) and data.get("room_id") == self.room_id:
            seq = int(frame["seq"])
            if seq <= self.seen_seq:
                return
            self.seen_seq = seq
            await self._stored(ws, event, data)

    async def _joined(self, ws: WebSocketConnection, data: Mapping[str, Any]) -> None:
        room = data.get("room") or {}
        state = data.get("state") or {}
        self.joined = True
        self.seen_seq = max(self.seen_seq, int(room.get("last_seq") or 0))
        if room.get("open") is False:
            self.say("this live session has ended")
            raise _Leave(0)
        self.rules = IgnoreRules.of(state.get("settings"))
        self.sent = None  # whatever the server kept, send the whole directory once
        await self._set_sharing(ws, bool(state.get("sharing")), joined=True)

    async def _stored(self, ws: WebSocketConnection, event: str, data: Mapping[str, Any]
                      ) -> None:
        if event in ("sharing/start", "sharing/end"):
            await self._set_sharing(ws, event == "sharing/start", joined=False)
        elif event == "settings":
            self.rules = IgnoreRules.of(data)
            self.say("the instructor changed the files to ignore")
            self._last_skipped = None
            if self.sharing:
                self.sent = None
                await self.share(ws)
        elif event == "room/closed":
            self.say("the instructor ended this live session")
            raise _Leave(0)

    async def _set_sharing(self, ws: WebSocketConnection, on: bool, *, joined: bool) -> None:
        was = self.sharing
        self.sharing = on
        if on:
            if not was:
                self.say(f"sharing is on: sending {self.root}")
                self.sent = None
            await self.share(ws)
        elif was or joined:
            self.say("sharing is off: waiting for the instructor to start it")

    async def share(self, ws: WebSocketConnection) -> None:
        """Send what the instructor lacks: everything first, then only the changes."""
        async with self._lock:
            if self.blocked:
                return
            found = await trio.to_thread.run_sync(scan, self.root, self.rules)
            if found.skipped != self._last_skipped:
                self._last_skipped = found.skipped
                for name, why in found.skipped:
                    self.say(f"  skipped {sanitize(name)}: {why}")
            if self.sent is None:
                if not found.files:
                    self.say("  nothing to share yet")
                    self.sent = {}
                    return
                event = "sharing/code_send"
                files = [{"filename": n, "status": "new", "content": t}
                         for n, t in found.files.items()]
            else:
                event = "sharing/code_update"
                files = changes(self.sent, found.files)
                if not files:
                    return
            ref = self._next_ref()
            self._share_refs.add(ref)
            await ws.send_message(_frame(event, {"room_id": self.room_id, "files": files}, ref))
            self.sent = dict(found.files)
            what = ", ".join(f"{f['filename']} ({f['status']})" for f in files[:5])
            more = f" and {len(files) - 5} more" if len(files) > 5 else ""
            self.say(f"  sent {sanitize(what)}{more}")


async def watch(root: Path, sharer: Sharer) -> None:
    """Wake the sharer on every batch of changes under DIR."""
    async for _ in watchfiles.awatch(root, debounce=DEBOUNCE_MS, step=50,
                                     rust_timeout=1000, yield_on_timeout=False):
        sharer.changed.set()


async def share_loop(root: Path, room_id: int, chat_url: str, token: str,
                     say: Callable[[str], None]) -> int:
    sharer = Sharer(root, room_id, say)
    backoff = Backoff()
    headers = [(b"Authorization", f"Bearer {token}".encode())]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch, root, sharer)
        while True:
            why, leave = "connection lost", None
            try:
                async with open_websocket_url(chat_url, extra_headers=headers,
                                              connect_timeout=CONNECT_TIMEOUT,
                                              disconnect_timeout=CLOSE_TIMEOUT,
                                              max_message_size=MAX_MESSAGE) as ws:
                    await sharer.converse(ws)
            except* _Leave as left:
                first = left.exceptions[0]
                leave = first.code if isinstance(first, _Leave) else 1
            except* ConnectionRejected as refused:
                status = getattr(refused.exceptions[0], "status_code", 0)
                if status in FATAL_HANDSHAKE:
                    say(f"classroom share: {FATAL_HANDSHAKE[status]}")
                    leave = 1
                why = f"the chat server refused the connection (HTTP {status})"
            except* ConnectionClosed as closed:
                gone = closed.exceptions[0]
                if isinstance(gone, ConnectionClosed):
                    why = _closed_why(gone)
            except* _Retry:
                why = "the server is busy"
            except* (HandshakeError, OSError) as failed:
                why = f"cannot reach the chat server at {chat_url} ({failed.exceptions[0]})"
            if leave is not None:
                nursery.cancel_scope.cancel()
                return leave
            if sharer.joined:
                backoff.reset()
            delay = backoff.next()
            say(f"{why}; reconnecting in {delay:.1f} s")
            await trio.sleep(delay)
    return 0  # not reached: the loop only ends by returning


def run_share(directory: str, server_url: str, room_id: int | None, username: str | None,
              chat_url: str | None) -> int:
    """The `classroom share` command; returns the exit code."""
    root = Path(directory).resolve()
    if not root.is_dir():
        print(f"classroom share: {directory} is not a directory", file=sys.stderr)
        return 2
    terminal = _Terminal(_Stdin())
    server = _normal_server(server_url)

    def say(line: str) -> None:
        terminal.say(line)

    try:
        check_server(server)  # before the password: is anything there?
        token = sign_in(terminal, server, username, "classroom share")
        if token is None:
            return 1
        if room_id is None:
            room_id = _pick_session(terminal, server, token)
            if room_id is None:
                return 1
        url = chat_url or find_chat_url(server)
        say(f"Sharing {root} in live session {room_id} (Ctrl-C stops).")
        return trio.run(share_loop, root, room_id, url, token, say)
    except (_Quit, EOFError, KeyboardInterrupt):
        terminal.say("")
        return 0
    except BaseExceptionGroup as group:
        if group.subgroup(KeyboardInterrupt) is None:
            raise
        return 0
    except ApiError as exc:
        print(f"classroom share: {exc.message}", file=sys.stderr, flush=True)
        return 1


def _pick_session(terminal: _Terminal, server: str, token: str) -> int | None:
    """The open live session of the user's classes (asked when there are several)."""
    sessions: list[tuple[str, int]] = []
    for chosen in _items(api_call(server, "GET", "/classrooms", token=token), "classrooms"):
        listed = api_call(server, "GET", f"/classrooms/{chosen['id']}/sessions", token=token)
        for room in _items(listed, "sessions", "rooms"):
            if room.get("open"):
                sessions.append((sanitize(str(chosen.get("name", "?"))), int(room["id"])))
    if not sessions:
        terminal.say("No live session is open in your classes right now.")
        return None
    if len(sessions) == 1:
        return sessions[0][1]
    terminal.say("Open live sessions:", *(f"  {i}. {name} (session {rid})"
                                          for i, (name, rid) in enumerate(sessions, 1)))
    return sessions[terminal.choose("Session", len(sessions))][1]
