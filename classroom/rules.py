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
    edit or delete a post       yes        403       404
    comment on a post           yes        yes       404
    manage the class (remove a
      student, join code,
      archive)                  yes        403       404
    leave the class             403        yes       404

Comments (`check_comment_thread`, `may_delete_comment`): a class comment (no thread) is seen
by every member; a private comment belongs to one student's thread with the instructor on
that post, seen and written by that student and the instructor only (a student writes only
in their own thread). The instructor may delete any comment; anyone may delete their own.

An archived class is read-only: `check_not_archived` refuses every action that writes to it
(posts, comments, sessions, discussions, joining) until the instructor restores it.

Not a member is always 404, never 403, so a class's existence does not leak. A private message
goes only between the class's instructor and one of its students: `check_private_target`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from .errors import Conflict, Forbidden, Invalid, NotFound


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
    EDIT_POST = "edit or delete posts"
    COMMENT = "comment on posts"
    MANAGE_CLASS = "manage the class (remove students, the join code, archiving)"
    LEAVE_CLASS = "leave the class (an instructor archives it instead)"


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
    Action.EDIT_POST: _INSTRUCTOR,
    Action.COMMENT: _BOTH,
    Action.MANAGE_CLASS: _INSTRUCTOR,
    Action.LEAVE_CLASS: _STUDENT,
}
# What an archived class refuses: everything that would change it.
ARCHIVE_REFUSES: Final = frozenset({
    Action.CREATE_POST, Action.EDIT_POST, Action.COMMENT, Action.MANAGE_SESSION,
    Action.OPEN_DISCUSSION,
})


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


def check_comment_thread(role: Role, user_id: int, student_id: int | None,
                         student_role: Role | None) -> None:
    """May `user_id` (of `role`) write in the thread of `student_id` (None: the class)?
    `student_role` is that student's role in the class (None: not a member)."""
    if student_id is None:
        return
    if role == Role.STUDENT:
        if student_id != user_id:
            raise Forbidden("a student comments privately only in their own thread")
        return
    if student_role != Role.STUDENT:
        raise NotFound("no such student in this class")


def may_see_comment(role: Role, user_id: int, student_id: int | None) -> bool:
    return student_id is None or role == Role.INSTRUCTOR or student_id == user_id


def may_delete_comment(role: Role, user_id: int, author_id: int) -> bool:
    return role == Role.INSTRUCTOR or author_id == user_id


def check_not_archived(archived: bool, action: Action) -> None:
    if archived and action in ARCHIVE_REFUSES:
        raise Conflict("this class is archived; the instructor can restore it")
