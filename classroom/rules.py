"""Who may do what in a class: every permission rule of the product, here and only here.

    action                  instructor  student   not a member
    ----------------------  ----------  --------  ------------
    view class, posts, tags     yes        yes       404
    view rooms / history        yes        yes       404
    join a room, message        yes        yes       404
    post an update              yes        403       404
    view roster                 yes        403       404
      (in a live room a student sees the instructor and who is online, by display name)
    see and share the join code yes        403       404
    start/end live session      yes        403       404
    open a discussion           yes        403       404
    view attendance             yes        403       404
    kick a member (room/kill)   yes        403       404
    message one student         yes        403       404
    room settings, sharing
      control, steps, exercise,
      feedback, room stats      yes        403       404
    message the instructor      403        yes       404
    share code, step status,
      signal                    403        yes       404

Not a member is always 404, never 403, so a class's existence does not leak. A private message
goes only between the class's instructor and one of its students: `check_private_target`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from .errors import Forbidden, Invalid, NotFound


class Role(enum.StrEnum):
    INSTRUCTOR = "instructor"
    STUDENT = "student"


class Action(enum.Enum):
    VIEW_CLASS = "see this class"
    JOIN_ROOM = "join this room"
    SEND_MESSAGE = "send messages here"
    CREATE_POST = "post to the class stream"
    VIEW_ROSTER = "see the list of people in this class"
    SHARE_JOIN_CODE = "see and share the join code"
    MANAGE_SESSION = "start or end a live session"
    OPEN_DISCUSSION = "open a discussion"
    VIEW_ATTENDANCE = "see attendance"
    KICK = "remove someone from a live room"
    MESSAGE_STUDENT = "message a student privately"
    RUN_ROOM = "use the coding lab's instructor tools"
    MESSAGE_INSTRUCTOR = "ask the instructor privately"
    STUDENT_WORK = "share code or report progress on steps"


_BOTH: Final = frozenset({Role.INSTRUCTOR, Role.STUDENT})
_INSTRUCTOR: Final = frozenset({Role.INSTRUCTOR})
_STUDENT: Final = frozenset({Role.STUDENT})

ALLOWED: Final[Mapping[Action, frozenset[Role]]] = {
    Action.VIEW_CLASS: _BOTH,
    Action.JOIN_ROOM: _BOTH,
    Action.SEND_MESSAGE: _BOTH,
    Action.CREATE_POST: _INSTRUCTOR,
    Action.VIEW_ROSTER: _INSTRUCTOR,
    Action.SHARE_JOIN_CODE: _INSTRUCTOR,
    Action.MANAGE_SESSION: _INSTRUCTOR,
    Action.OPEN_DISCUSSION: _INSTRUCTOR,
    Action.VIEW_ATTENDANCE: _INSTRUCTOR,
    Action.KICK: _INSTRUCTOR,
    Action.MESSAGE_STUDENT: _INSTRUCTOR,
    Action.RUN_ROOM: _INSTRUCTOR,
    Action.MESSAGE_INSTRUCTOR: _STUDENT,
    Action.STUDENT_WORK: _STUDENT,
}


def may(role: Role | None, action: Action) -> bool:
    return role is not None and role in ALLOWED[action]


def check(role: Role | None, action: Action, *, what: str = "class") -> Role:
    """Return the role when it may do `action`; NotFound for outsiders, Forbidden otherwise."""
    if role is None:
        raise NotFound(f"no such {what}")
    if role not in ALLOWED[action]:
        raise Forbidden(f"only the {_who(action)} may {action.value}")
    return role


def _who(action: Action) -> str:
    roles = ALLOWED[action]
    return "instructor" if roles == _INSTRUCTOR else "students" if roles == _STUDENT else "members"


def check_private_target(sender_role: Role, target_role: Role | None) -> None:
    """A private message joins the instructor and one student of the same class."""
    if target_role is None:
        raise NotFound("no such member in this class")
    if sender_role == target_role:
        raise Invalid("private messages go between the instructor and a student")
