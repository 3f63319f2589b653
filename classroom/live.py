"""The live events members send in a room: who may send each, who receives it, what its data
must look like, and what room state it leaves behind. `chat/` does the moving; every rule
about live events is here.

    event                     may send    goes to                  state kept
    ------------------------  ----------  -----------------------  ----------------------
    message                   members     everyone in the room     -
    message/to_mentor         students    the instructor           -
    message/to_client         instructor  one student (user_id)    -
    settings                  instructor  everyone                 settings
    sharing/start|end         instructor  everyone                 sharing
    sharing/code_send|update  students    the instructor           code (per student)
    steps/all, steps/import   instructor  everyone (as steps/all)  steps
    steps/status/to_mentor    students    the instructor           step/N (per student)
    steps/status/to_client    instructor  one student              step/N (per student)
    exercise                  instructor  everyone                 exercise
    exercise/feedback         instructor  one student              feedback (per student)
    exercise/reset            instructor  everyone                 feedback cleared
    signal                    students    the instructor           signal (per student)

A private event is seen by its sender and its recipient only, live and in history.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final

import attrs

from storage import User

from . import limits
from .errors import Invalid, TooLarge
from .rules import Action
from .steps_import import (
    MAX_MARKDOWN,
    MAX_STEP_CONTENT,
    MAX_STEP_NAME,
    MAX_UPLOAD,
    render,
    split_markdown,
    upload_steps,
)
from .views import time_view

MAX_FILES_PER_SHARE: Final = 50
MAX_SHARE_BYTES: Final = 512 * 1024
MAX_FILENAME: Final = 255
MAX_STEPS: Final = 100
MAX_IGNORE_TEXT: Final = 10_000
MAX_EXERCISE: Final = 20_000
FILE_STATUSES: Final = frozenset({"new", "changed", "deleted", "unchanged"})
STUDENT_STEP_STATUSES: Final = frozenset({"NONE", "IN_PROGRESS", "HELP", "DONE"})
INSTRUCTOR_STEP_STATUSES: Final = frozenset({"NONE", "ACCEPTED", "REJECTED"})
SIGNALS: Final = frozenset({"NONE", "IN_PROGRESS", "HELP", "DONE"})
STEP_TYPES: Final = frozenset({"theory", "exercise"})

Data = Mapping[str, Any]
CLOSED_NOTICE: Final = "the instructor ended this room"


def stored_data(room_id: int, sender: User, data: Mapping[str, Any], at: datetime) -> str:
    """The JSON text stored for an event and sent out as its `data`, byte for byte, live and
    in history: the room, who sent it, the event's own fields, and when."""
    payload = {"room_id": room_id, "from": {"id": sender.id, "name": sender.display_name},
               **data, "at": time_view(at)}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


class Audience(enum.Enum):
    ROOM = "everyone in the room"
    INSTRUCTOR = "the instructor"
    TARGET = "the student named by user_id"


class Keep(enum.Enum):
    """Where an event's state goes: for the room, for its sender, or for its target."""

    ROOM = "room"
    SENDER = "sender"
    TARGET = "target"
    CLEAR = "clear"


@attrs.frozen
class StateRule:
    name: Callable[[Data], str]
    keep: Keep


@attrs.frozen
class EventSpec:
    name: str
    action: Action
    audience: Audience
    clean: Callable[[Data], dict[str, Any]]
    emit: str | None = None  # the name others receive, when it differs
    state: StateRule | None = None
    # Cleaning renders Markdown (up to MAX_MARKDOWN characters, a few hundred ms of CPU):
    # run it in a worker thread, not on the event loop every connection shares.
    heavy: bool = False

    @property
    def emitted(self) -> str:
        return self.emit or self.name


def _text(data: Data, key: str, maximum: int, *, required: bool = True) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise Invalid(f"{key} must be a string")
    if required and not value.strip():
        raise Invalid(f"{key} is required")
    if len(value) > maximum:
        raise TooLarge(f"{key} is too long ({len(value)} characters; at most {maximum})")
    return value


def user_id_of(data: Data) -> int:
    return limits.record_id(data.get("user_id"), "user_id")


def _choice(data: Data, key: str, allowed: frozenset[str]) -> str:
    value = data.get(key)
    if not isinstance(value, str) or value.upper() not in allowed:
        raise Invalid(f"{key} must be one of {', '.join(sorted(allowed))}")
    return value.upper()


def _step_index(data: Data) -> int:
    value = data.get("step")
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < MAX_STEPS:
        raise Invalid(f"step must be a step number from 0 to {MAX_STEPS - 1}")
    return value


def _message(data: Data) -> dict[str, Any]:
    return {"text": limits.message_text(data.get("text"))}


def _message_to_client(data: Data) -> dict[str, Any]:
    return {"user_id": user_id_of(data), "text": limits.message_text(data.get("text"))}


def parse_ignore_rules(text: str) -> dict[str, list[str]]:
    """gitignore text -> names, dirs and extensions (the subset a live-coding client applies)."""
    names: list[str] = []
    dirs: list[str] = []
    extensions: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        if line.endswith("/"):
            dirs.append(line.rstrip("/").lstrip("/"))
        elif re.fullmatch(r"\*\.[\w.-]+", line):
            extensions.append(line[1:])
        else:
            names.append(line.lstrip("/"))
    return {"names": names, "dirs": dirs, "extensions": extensions}


def _settings(data: Data) -> dict[str, Any]:
    text = _text(data, "files_to_ignore", MAX_IGNORE_TEXT, required=False)
    return {"files_to_ignore": text, **parse_ignore_rules(text)}


def _files(data: Data) -> dict[str, Any]:
    files = data.get("files")
    if not isinstance(files, list) or not files:
        raise Invalid("files must be a non-empty list of {filename, status, content}")
    if len(files) > MAX_FILES_PER_SHARE:
        raise TooLarge(f"at most {MAX_FILES_PER_SHARE} files per share")
    clean: list[dict[str, str]] = []
    total = 0
    for item in files:
        if not isinstance(item, dict):
            raise Invalid("each file must be an object {filename, status, content}")
        name = limits.file_name(_text(item, "filename", MAX_FILENAME), MAX_FILENAME)
        parts = name.replace("\\", "/").split("/")
        if name.startswith("/") or ".." in parts:  # (NUL and other controls: file_name)
            raise Invalid(f"bad filename {name[:60]!r}: relative paths only")
        status = item.get("status", "changed")
        if not isinstance(status, str) or status.lower() not in FILE_STATUSES:
            raise Invalid(f"status must be one of {', '.join(sorted(FILE_STATUSES))}")
        content = _text(item, "content", MAX_SHARE_BYTES, required=False)
        total += len(content.encode("utf-8", "surrogatepass"))
        if total > MAX_SHARE_BYTES:
            raise TooLarge(f"a share may carry at most {MAX_SHARE_BYTES // 1024} KiB of code")
        clean.append({"filename": name, "status": status.lower(), "content": content})
    return {"files": clean}


def _step(item: object, index: int) -> dict[str, str]:
    if not isinstance(item, dict):
        raise Invalid(f"step {index} must be an object {{name, content, language, type}}")
    kind = item.get("type", "theory")
    if not isinstance(kind, str) or kind not in STEP_TYPES:
        raise Invalid(f"step {index}: type must be one of {', '.join(sorted(STEP_TYPES))}")
    content = _text(item, "content", MAX_STEP_CONTENT, required=False)
    return {
        "name": _text(item, "name", MAX_STEP_NAME),
        "content": content,
        "language": _text(item, "language", 40, required=False),
        "type": kind,
    }


def _steps(data: Data) -> dict[str, Any]:
    steps = data.get("steps")
    if not isinstance(steps, list) or not steps:
        raise Invalid("steps must be a non-empty list")
    if len(steps) > MAX_STEPS:
        raise TooLarge(f"at most {MAX_STEPS} steps")
    clean = [_step(item, i) for i, item in enumerate(steps)]
    if sum(len(step["content"]) for step in clean) > MAX_MARKDOWN:
        raise TooLarge(f"the steps together may hold at most {MAX_MARKDOWN} characters")
    # Rendered once here, stored with the event: every member gets the same safe HTML.
    return {"steps": [{**step, "html": render(step["content"])} for step in clean]}


def _steps_import(data: Data) -> dict[str, Any]:
    steps = import_steps(data)
    if not steps:
        raise Invalid("found no steps: start each step with a # heading")
    return _steps({"steps": steps})


def import_steps(data: Data) -> list[dict[str, str]]:
    """The steps of `steps/import` or `steps/preview`: pasted Markdown (`markdown`), or an
    uploaded `.md` or Notion-export `.zip` (`filename` and `content_base64`).

    Uploads come over the WebSocket, not an HTTP endpoint: the result is a room event like
    any other (stored, then fanned out at once to every member on every chat server; an app
    server's write would reach members only through the chat servers' database sync), and
    the instructor previews the split steps on the same connection. The 1 MiB frame bounds
    an upload to MAX_UPLOAD (700 KiB), plenty for a lesson's Markdown."""
    if "content_base64" not in data:
        return split_markdown(_text(data, "markdown", MAX_MARKDOWN))
    encoded = _text(data, "content_base64", MAX_UPLOAD * 4 // 3 + 4)
    filename = _text(data, "filename", MAX_FILENAME, required=False)
    try:
        content = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Invalid("content_base64 is not base64") from exc
    return upload_steps(filename, content)


def _status_to_mentor(data: Data) -> dict[str, Any]:
    return {"step": _step_index(data), "status": _choice(data, "status", STUDENT_STEP_STATUSES)}


def _status_to_client(data: Data) -> dict[str, Any]:
    return {"user_id": user_id_of(data), "step": _step_index(data),
            "status": _choice(data, "status", INSTRUCTOR_STEP_STATUSES)}


def _exercise(data: Data) -> dict[str, Any]:
    content = _text(data, "content", MAX_EXERCISE)
    return {"content": content, "html": render(content)}


def _feedback(data: Data) -> dict[str, Any]:
    accepted = data.get("accepted")
    if not isinstance(accepted, bool):
        raise Invalid("accepted must be true or false")
    return {"user_id": user_id_of(data), "accepted": accepted}


def _signal(data: Data) -> dict[str, Any]:
    return {"value": _choice(data, "value", SIGNALS)}


def _nothing(data: Data) -> dict[str, Any]:
    return {}


def _fixed(name: str) -> Callable[[Data], str]:
    return lambda data: name


def _per_step(data: Data) -> str:
    return f"step/{data['step']}"


SPECS: Final[Mapping[str, EventSpec]] = {spec.name: spec for spec in (
    EventSpec("message", Action.SEND_MESSAGE, Audience.ROOM, _message),
    EventSpec("message/to_mentor", Action.MESSAGE_INSTRUCTOR, Audience.INSTRUCTOR, _message),
    EventSpec("message/to_client", Action.MESSAGE_STUDENT, Audience.TARGET, _message_to_client),
    EventSpec("settings", Action.RUN_ROOM, Audience.ROOM, _settings,
              state=StateRule(_fixed("settings"), Keep.ROOM)),
    EventSpec("sharing/start", Action.RUN_ROOM, Audience.ROOM, _nothing,
              state=StateRule(_fixed("sharing"), Keep.ROOM)),
    EventSpec("sharing/end", Action.RUN_ROOM, Audience.ROOM, _nothing,
              state=StateRule(_fixed("sharing"), Keep.ROOM)),
    EventSpec("sharing/code_send", Action.STUDENT_WORK, Audience.INSTRUCTOR, _files,
              state=StateRule(_fixed("code"), Keep.SENDER)),
    EventSpec("sharing/code_update", Action.STUDENT_WORK, Audience.INSTRUCTOR, _files,
              state=StateRule(_fixed("code"), Keep.SENDER)),
    EventSpec("steps/all", Action.RUN_ROOM, Audience.ROOM, _steps,
              state=StateRule(_fixed("steps"), Keep.ROOM), heavy=True),
    EventSpec("steps/import", Action.RUN_ROOM, Audience.ROOM, _steps_import, emit="steps/all",
              state=StateRule(_fixed("steps"), Keep.ROOM), heavy=True),
    EventSpec("steps/status/to_mentor", Action.STUDENT_WORK, Audience.INSTRUCTOR,
              _status_to_mentor, state=StateRule(_per_step, Keep.SENDER)),
    EventSpec("steps/status/to_client", Action.RUN_ROOM, Audience.TARGET, _status_to_client,
              state=StateRule(_per_step, Keep.TARGET)),
    EventSpec("exercise", Action.RUN_ROOM, Audience.ROOM, _exercise,
              state=StateRule(_fixed("exercise"), Keep.ROOM), heavy=True),
    EventSpec("exercise/feedback", Action.RUN_ROOM, Audience.TARGET, _feedback,
              state=StateRule(_fixed("feedback"), Keep.TARGET)),
    EventSpec("exercise/reset", Action.RUN_ROOM, Audience.ROOM, _nothing,
              state=StateRule(_fixed("feedback"), Keep.CLEAR)),
    EventSpec("signal", Action.STUDENT_WORK, Audience.INSTRUCTOR, _signal,
              state=StateRule(_fixed("signal"), Keep.SENDER)),
)}
