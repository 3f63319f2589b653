"""The permission table, every cell: written out here as data, independently of
classroom/rules.py, and checked two ways: against `check()` itself, and through the domain
services on a real database, so a rule that exists but is not applied also fails."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

import pytest
import trio

from classroom import Services
from classroom.errors import ClassroomError, Forbidden, NotFound
from classroom.rules import (
    ALLOWED,
    Action,
    Role,
    check,
    check_comment_thread,
    check_private_target,
    may_delete_comment,
    may_see_comment,
)
from storage import Classroom, Room, User, open_storage

OK: Final = "ok"
F: Final = "403"
N: Final = "404"
INS, STU, OUT = Role.INSTRUCTOR, Role.STUDENT, None  # OUT: not a member

# (action, instructor, student, outsider) -- the product's rules as the issues state them.
TABLE: Final = [
    (Action.VIEW_CLASS, OK, OK, N),
    (Action.JOIN_ROOM, OK, OK, N),
    (Action.SEND_MESSAGE, OK, OK, N),
    (Action.CREATE_POST, OK, F, N),
    (Action.VIEW_ROSTER, OK, F, N),
    (Action.SHARE_JOIN_CODE, OK, F, N),
    (Action.MANAGE_SESSION, OK, F, N),
    (Action.OPEN_DISCUSSION, OK, F, N),
    (Action.VIEW_ATTENDANCE, OK, F, N),
    (Action.KICK, OK, F, N),
    (Action.MESSAGE_STUDENT, OK, F, N),
    (Action.RUN_ROOM, OK, F, N),
    (Action.MESSAGE_INSTRUCTOR, F, OK, N),
    (Action.STUDENT_WORK, F, OK, N),
    (Action.EDIT_POST, OK, F, N),
    (Action.COMMENT, OK, OK, N),
    (Action.MANAGE_CLASS, OK, F, N),
    (Action.LEAVE_CLASS, F, OK, N),
]
CELLS: Final = [(action, role, outcome) for action, *outcomes in TABLE
                for role, outcome in zip((INS, STU, OUT), outcomes, strict=True)]


def outcome_of(exc: BaseException | None) -> str:
    if exc is None:
        return OK
    if isinstance(exc, NotFound):
        return N
    if isinstance(exc, Forbidden):
        return F
    raise AssertionError(f"unexpected {exc!r}")


def test_the_table_covers_every_action() -> None:
    assert {row[0] for row in TABLE} == set(Action) == set(ALLOWED)


@pytest.mark.parametrize(("action", "role", "expected"), CELLS,
                         ids=[f"{a.name}-{r or 'outsider'}" for a, r, _ in CELLS])
def test_check_gives_each_cell(action: Action, role: Role | None, expected: str) -> None:
    try:
        check(role, action)
    except ClassroomError as exc:
        assert outcome_of(exc) == expected
        assert exc.status == int(expected)
    else:
        assert expected == OK


def test_private_messages_join_instructor_and_student_only() -> None:
    check_private_target(INS, STU)
    check_private_target(STU, INS)
    for sender, target in ((INS, INS), (STU, STU)):
        with pytest.raises(ClassroomError):
            check_private_target(sender, target)
    with pytest.raises(NotFound):
        check_private_target(INS, None)


def test_comment_threads_and_deleting_comments() -> None:
    # A class comment (no thread) is anyone's; a student writes only in their own thread,
    # the instructor in any student's.
    check_comment_thread(STU, 7, None, None)
    check_comment_thread(STU, 7, 7, STU)
    with pytest.raises(Forbidden):
        check_comment_thread(STU, 7, 8, STU)
    check_comment_thread(INS, 1, 7, STU)
    with pytest.raises(NotFound):
        check_comment_thread(INS, 1, 9, None)
    with pytest.raises(NotFound):
        check_comment_thread(INS, 1, 1, INS)
    # (role, viewer, thread) -> may see
    assert may_see_comment(STU, 7, None) and may_see_comment(STU, 7, 7)
    assert not may_see_comment(STU, 7, 8)
    assert may_see_comment(INS, 1, 8)
    # (role, user, author) -> may delete: the instructor any, anyone their own
    assert may_delete_comment(INS, 1, 7) and may_delete_comment(STU, 7, 7)
    assert not may_delete_comment(STU, 7, 8)


# -- the same cells through the services, on a real database ------------------------------

Attempt = Callable[[Services, User, Classroom, Room], Awaitable[object]]

# One real domain call per HTTP-side action (live events have their own table in
# tests/chat/test_live_permissions.py).
ATTEMPTS: Final[dict[Action, Attempt]] = {
    Action.VIEW_CLASS: lambda s, u, c, r: s.classes.get(u, c.id),
    Action.JOIN_ROOM: lambda s, u, c, r: s.rooms.access(u, r.id),
    Action.CREATE_POST: lambda s, u, c, r: s.posts.create(u, c.id, title="hello"),
    Action.VIEW_ROSTER: lambda s, u, c, r: s.classes.roster(u, c.id),
    Action.MANAGE_SESSION: lambda s, u, c, r: s.rooms.end(u, r.id),
    Action.OPEN_DISCUSSION: lambda s, u, c, r: s.rooms.open(u, c.id, "discussion", "t"),
    Action.VIEW_ATTENDANCE: lambda s, u, c, r: s.rooms.attendance(u, r.id),
    Action.EDIT_POST: lambda s, u, c, r: _edit_first_post(s, u, c),
    Action.COMMENT: lambda s, u, c, r: _comment_first_post(s, u, c),
    Action.MANAGE_CLASS: lambda s, u, c, r: s.classes.reset_join_code(u, c.id),
    Action.LEAVE_CLASS: lambda s, u, c, r: s.classes.leave(u, c.id),
}


async def _first_post(services: Services, classroom: Classroom) -> int:
    posts = await services.storage.list_posts(classroom.id)
    return posts[0].id


async def _edit_first_post(services: Services, user: User, classroom: Classroom) -> object:
    return await services.posts.edit(user, await _first_post(services, classroom),
                                     title="edited")


async def _comment_first_post(services: Services, user: User, classroom: Classroom
                              ) -> object:
    return await services.posts.comment(user, await _first_post(services, classroom), "hi")
SERVICE_CELLS: Final = [cell for cell in CELLS if cell[0] in ATTEMPTS]


@pytest.mark.parametrize(("action", "role", "expected"), SERVICE_CELLS,
                         ids=[f"{a.name}-{r or 'outsider'}" for a, r, _ in SERVICE_CELLS])
async def test_services_apply_each_cell(db_url: str, action: Action, role: Role | None,
                                        expected: str) -> None:
    with trio.fail_after(20):
        async with open_storage(db_url) as storage:
            await storage.init_schema()
            services = Services.build(storage)
            people = {}
            for name in ("teacher", "ann", "stranger"):
                people[name] = (await services.accounts.sign_up(name, name, "password123")).user
            classroom = await services.classes.create(people["teacher"], "Networks")
            await services.classes.join(people["ann"], classroom.join_code)
            room = await services.rooms.open(people["teacher"], classroom.id, "live")
            await services.posts.create(people["teacher"], classroom.id, title="first")
            actor = {INS: people["teacher"], STU: people["ann"], OUT: people["stranger"]}[role]
            try:
                await ATTEMPTS[action](services, actor, classroom, room)
            except (NotFound, Forbidden) as exc:
                assert outcome_of(exc) == expected
            else:
                assert expected == OK
