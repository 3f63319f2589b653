"""The JSON shapes of the API, each built in one place: ids are ints, times ISO 8601 "Z".

A class's join code is included only for those the rules let share it (the instructor), so
a student's API client sees the same as a student's page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from classroom.rules import Action, Role, may

from .render import iso_time

if TYPE_CHECKING:  # web/ calls classroom/, never storage/; the record types are only names
    from classroom import Classroom, Comment, Member, Membership, Post, TagCount, User

__all__ = ["classroom", "comment", "member", "membership", "post", "tag_count", "user"]

JSON = dict[str, Any]


def user(value: User) -> JSON:
    return {
        "id": value.id,
        "username": value.username,
        "display_name": value.display_name,
        "created_at": iso_time(value.created_at),
    }


def classroom(value: Classroom, role: Role | str) -> JSON:
    shape: JSON = {
        "id": value.id,
        "name": value.name,
        "description": value.description,
        "instructor": {"id": value.instructor_id, "display_name": value.instructor_name},
        "role": str(role),
        "created_at": iso_time(value.created_at),
        "archived": value.archived,
    }
    if may(Role(role), Action.SHARE_JOIN_CODE):
        shape["join_code"] = value.join_code
        shape["join_open"] = value.join_open
    return shape


def membership(value: Membership) -> JSON:
    return {**classroom(value.classroom, value.role), "joined_at": iso_time(value.joined_at)}


def member(value: Member) -> JSON:
    return {"user": user(value.user), "role": value.role, "joined_at": iso_time(value.joined_at)}


def post(value: Post) -> JSON:
    return {
        "id": value.id,
        "classroom_id": value.classroom_id,
        "author": {"id": value.author_id, "display_name": value.author_name},
        "title": value.title,
        "body": value.body,
        # Sorted as the database lists them, so a new post looks as it will when read back.
        "tags": sorted(value.tags),
        "created_at": iso_time(value.created_at),
        "edited_at": iso_time(value.edited_at) if value.edited_at else None,
    }


def comment(value: Comment) -> JSON:
    """`student_id`: the student whose private thread with the instructor it is in (None:
    a class comment, seen by every member)."""
    return {
        "id": value.id,
        "post_id": value.post_id,
        "author": {"id": value.author_id, "display_name": value.author_name},
        "private": value.private,
        "student_id": value.student_id,
        "body": value.body,
        "created_at": iso_time(value.created_at),
    }


def tag_count(value: TagCount) -> JSON:
    return {"name": value.name, "posts": value.posts}
