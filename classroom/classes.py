"""Classes and membership: create, join by code, list, roster."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Final

from storage import Classroom, DuplicateKey, Member, Membership, Storage, User

from . import limits
from .cache import MISSING, Cache
from .clock import Clock, utcnow
from .errors import Conflict, NotFound, Unavailable, translate_storage_errors
from .rules import Action, Role, check, check_not_archived

# No 0/O, 1/I/L look-alikes: 31 symbols, so 10 of them carry ~49.5 bits (>= 40 required).
JOIN_CODE_ALPHABET: Final = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
_CODE_ATTEMPTS: Final = 5


def new_join_code() -> str:
    return "".join(secrets.choice(JOIN_CODE_ALPHABET) for _ in range(limits.JOIN_CODE_LENGTH))


class Classes:
    def __init__(self, storage: Storage, cache: Cache, *, clock: Clock = utcnow) -> None:
        self._storage = storage
        self._cache = cache
        self._now = clock

    def on_members_may_have_changed(self, listener: Callable[[int | None], None]) -> None:
        """Call `listener(classroom_id)` when the class may have lost (or gained) members,
        in this process or another (within the cache's STALE_AFTER); None: any class."""
        self._cache.on_class_dropped(listener)

    @translate_storage_errors
    async def member_ids(self, classroom_id: int) -> set[int]:
        """Every member's user id (the instructor's included), from the database."""
        return await self._storage.member_ids(classroom_id)

    @translate_storage_errors
    async def role_of(self, user: User, classroom_id: int) -> Role | None:
        cached = self._cache.role(classroom_id, user.id)
        if cached is not None:
            return Role(cached)
        stamp = self._cache.stamp()
        role = await self._storage.get_role(classroom_id, user.id)
        if not role:
            return None  # non-members are not kept (cache.py)
        self._cache.keep_role(stamp, classroom_id, user.id, role)
        return Role(role)

    @translate_storage_errors
    async def role_and_ban(self, user: User, classroom_id: int, room_id: int
                           ) -> tuple[Role | None, bool]:
        """`role_of`, and whether the instructor removed the user from room `room_id`: one
        query when the role is not cached (a lecture's joins: each student is new here),
        only the removal's when it is. A removal is never cached: it is read every time."""
        cached = self._cache.role(classroom_id, user.id)
        if cached is not None:
            kept = Role(cached)
            return kept, (kept == Role.STUDENT
                          and await self._storage.is_banned(room_id, user.id))
        stamp = self._cache.stamp()
        role, banned = await self._storage.role_and_ban(classroom_id, room_id, user.id)
        if not role:
            return None, False
        self._cache.keep_role(stamp, classroom_id, user.id, role)
        return Role(role), banned

    @translate_storage_errors
    async def authorize(self, user: User, classroom_id: int, action: Action) -> Role:
        """The user's role in the class if it may do `action` (see rules.py), else
        NotFound / Forbidden."""
        return check(await self.role_of(user, classroom_id), action)

    @translate_storage_errors
    async def role_of_id(self, user_id: int, classroom_id: int) -> Role | None:
        role = await self._storage.get_role(classroom_id, user_id)
        return Role(role) if role else None

    @translate_storage_errors
    async def authorize_change(self, user: User, classroom_id: int, action: Action
                               ) -> tuple[Role, Classroom]:
        """`authorize` for an action that changes the class: also refused (Conflict) while
        the class is archived."""
        role = await self.authorize(user, classroom_id, action)
        classroom = await self._storage.get_classroom(classroom_id)
        if classroom is None:
            raise NotFound("no such class")
        check_not_archived(classroom.archived, action)
        return role, classroom

    @translate_storage_errors
    async def create(self, instructor: User, name: str, description: str = "") -> Classroom:
        clean_name = limits.class_name(name)
        clean_description = limits.class_description(description)
        for _ in range(_CODE_ATTEMPTS):
            try:
                return await self._storage.create_classroom(
                    clean_name, clean_description, new_join_code(), instructor, self._now())
            except DuplicateKey:
                continue  # ~1e-15 per class at today's sizes, but never fail on it
        raise Unavailable("could not find a free class code; try again")

    @translate_storage_errors
    async def join(self, student: User, code: str) -> tuple[Classroom, Role]:
        """Join by code as a student; joining a class one is already in changes nothing and
        returns the existing role. NotFound for a code that matches no class, Conflict for
        the code of a class whose joining is off or that is archived."""
        classroom = await self._storage.get_classroom_by_code(limits.join_code(code))
        if classroom is None:
            raise NotFound("no class has that code; check it with your instructor")
        if not classroom.join_open or classroom.archived:
            # The code is right (so the student has it from the instructor): say why it does
            # not work, not that it is wrong. Nothing else of the class is told.
            role = await self.role_of(student, classroom.id)
            if role is not None:
                return classroom, role  # a member already: nothing to join
            raise Conflict("that class is archived and takes no new students"
                           if classroom.archived else
                           "that class is not taking new students right now; ask your "
                           "instructor to turn joining on")
        if not await self._storage.add_member(classroom.id, student.id, Role.STUDENT,
                                              self._now()):
            role = await self.role_of(student, classroom.id)
            return classroom, role or Role.STUDENT
        return classroom, Role.STUDENT

    @translate_storage_errors
    async def get(self, user: User, classroom_id: int) -> tuple[Classroom, Role]:
        role = await self.authorize(user, classroom_id, Action.VIEW_CLASS)
        classroom = self._cache.class_value(classroom_id, "record")
        if classroom is MISSING:
            stamp = self._cache.stamp()
            classroom = await self._storage.get_classroom(classroom_id)
            if classroom is not None:
                self._cache.keep_class_value(stamp, classroom_id, "record", classroom)
        if classroom is None:
            raise NotFound("no such class")
        return classroom, role

    @translate_storage_errors
    async def mine(self, user: User) -> list[Membership]:
        return await self._storage.list_memberships(user.id)

    @translate_storage_errors
    async def roster(self, user: User, classroom_id: int) -> list[Member]:
        await self.authorize(user, classroom_id, Action.VIEW_ROSTER)
        return await self._storage.list_members(classroom_id)

    # -- managing a class (the instructor) and leaving it (a student) --------------------

    @translate_storage_errors
    async def remove_student(self, instructor: User, classroom_id: int, student_id: int
                             ) -> None:
        await self.authorize(instructor, classroom_id, Action.MANAGE_CLASS)
        if await self.role_of_id(student_id, classroom_id) != Role.STUDENT:
            raise NotFound("no such student in this class")
        await self._storage.remove_member(classroom_id, student_id)

    @translate_storage_errors
    async def leave(self, student: User, classroom_id: int) -> None:
        await self.authorize(student, classroom_id, Action.LEAVE_CLASS)
        await self._storage.remove_member(classroom_id, student.id)

    @translate_storage_errors
    async def reset_join_code(self, instructor: User, classroom_id: int) -> Classroom:
        """A fresh code (the old one stops working); joining is turned on again."""
        await self.authorize(instructor, classroom_id, Action.MANAGE_CLASS)
        for _ in range(_CODE_ATTEMPTS):
            try:
                await self._storage.set_join_code(classroom_id, new_join_code())
                break
            except DuplicateKey:
                continue
        else:
            raise Unavailable("could not find a free class code; try again")
        return await self._reloaded(classroom_id)

    @translate_storage_errors
    async def set_joining(self, instructor: User, classroom_id: int, open_: bool
                          ) -> Classroom:
        """Turn joining by code on or off (the code itself is kept)."""
        await self.authorize(instructor, classroom_id, Action.MANAGE_CLASS)
        await self._storage.set_join_open(classroom_id, open_)
        return await self._reloaded(classroom_id)

    @translate_storage_errors
    async def set_archived(self, instructor: User, classroom_id: int, archived: bool
                           ) -> Classroom:
        """Archive (read-only, out of the way) or restore the class."""
        await self.authorize(instructor, classroom_id, Action.MANAGE_CLASS)
        classroom = await self._reloaded(classroom_id)
        if archived == classroom.archived:
            raise Conflict("the class is archived already" if archived
                           else "the class is not archived")
        if archived and await self._storage.has_open_rooms(classroom_id):
            # Its live rooms would go on taking events in a class that is read-only.
            raise Conflict("end the live session and the open discussions first: an "
                           "archived class is read-only")
        await self._storage.set_archived(classroom_id, self._now() if archived else None)
        return await self._reloaded(classroom_id)

    async def _reloaded(self, classroom_id: int) -> Classroom:
        classroom = await self._storage.get_classroom(classroom_id)
        if classroom is None:
            raise NotFound("no such class")
        return classroom
