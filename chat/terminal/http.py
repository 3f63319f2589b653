"""The JSON API over urllib (blocking, before trio starts): log in, find the chat server's
address, list classes and open rooms, and the menu helpers that show and pick them."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any, Final

from .display import _room_label, sanitize

DEFAULT_CHAT_PORT: Final = 8001
HTTP_TIMEOUT: Final = 15.0



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
