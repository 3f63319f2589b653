"""Posts, their comments and tags of a class's stream."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from storage import Comment, Post, Storage, TagCount, User

from . import limits
from .cache import Cache
from .classes import Classes
from .clock import Clock, utcnow
from .errors import Forbidden, Invalid, NotFound, translate_storage_errors
from .rules import (
    Action,
    Role,
    check,
    check_comment_thread,
    may_delete_comment,
    may_see_comment,
)

PAGE_SIZE: Final = 50


class Posts:
    def __init__(self, storage: Storage, classes: Classes, cache: Cache, *,
                 clock: Clock = utcnow) -> None:
        self._storage = storage
        self._classes = classes
        self._cache = cache
        self._now = clock

    @translate_storage_errors
    async def create(self, author: User, classroom_id: int, *, title: str = "",
                     body: str = "", tags: str | list[str] = "") -> Post:
        await self._classes.authorize_change(author, classroom_id, Action.CREATE_POST)
        clean_title = limits.post_title(title)
        clean_body = limits.post_body(body)
        if not clean_title and not clean_body:
            raise Invalid("a post needs a title or some text")
        return await self._storage.create_post(classroom_id, author, clean_title, clean_body,
                                               limits.tags(tags), self._now())

    @translate_storage_errors
    async def stream(self, reader: User, classroom_id: int, *, tag: str | None = None,
                     before_id: int | None = None, limit: int = PAGE_SIZE) -> list[Post]:
        """Newest first, optionally only those with `tag` (any case)."""
        await self._classes.authorize(reader, classroom_id, Action.VIEW_CLASS)
        wanted = limits.tag(tag) if tag else None
        size = max(1, min(limit, PAGE_SIZE))

        async def load() -> tuple[Post, ...]:
            return tuple(await self._storage.list_posts(classroom_id, tag=wanted,
                                                        before_id=before_id, limit=size))

        return list(await self._cache.class_memo(
            classroom_id, ("posts", wanted, before_id, size), load))

    @translate_storage_errors
    async def tags(self, reader: User, classroom_id: int) -> list[TagCount]:
        await self._classes.authorize(reader, classroom_id, Action.VIEW_CLASS)

        async def load() -> tuple[TagCount, ...]:
            return tuple(await self._storage.list_tags(classroom_id))

        return list(await self._cache.class_memo(classroom_id, "tags", load))

    async def _post(self, user: User, post_id: int) -> tuple[Post, Role]:
        """The post and the user's role in its class; NotFound for a non-member."""
        post = await self._storage.get_post(post_id)
        role = await self._classes.role_of(user, post.classroom_id) if post else None
        check(role, Action.VIEW_CLASS, what="post")
        assert post is not None and role is not None
        return post, role

    @translate_storage_errors
    async def get(self, reader: User, post_id: int) -> tuple[Post, Role]:
        """One post and the reader's role in its class; NotFound for a non-member."""
        return await self._post(reader, post_id)

    @translate_storage_errors
    async def edit(self, user: User, post_id: int, *, title: str = "", body: str = "",
                   tags: str | list[str] = "") -> Post:
        """New title, text and tags; the post keeps an edited mark (`edited_at`)."""
        post, _ = await self._post(user, post_id)
        await self._classes.authorize_change(user, post.classroom_id, Action.EDIT_POST)
        clean_title = limits.post_title(title)
        clean_body = limits.post_body(body)
        if not clean_title and not clean_body:
            raise Invalid("a post needs a title or some text")
        if not await self._storage.update_post(post_id, clean_title, clean_body,
                                               limits.tags(tags), self._now()):
            raise NotFound("no such post")
        edited = await self._storage.get_post(post_id)
        if edited is None:
            raise NotFound("no such post")
        return edited

    @translate_storage_errors
    async def delete(self, user: User, post_id: int) -> Post:
        """Delete the post with its comments; returns what it was."""
        post, _ = await self._post(user, post_id)
        await self._classes.authorize_change(user, post.classroom_id, Action.EDIT_POST)
        await self._storage.delete_post(post_id)
        return post

    @translate_storage_errors
    async def comments(self, reader: User, classroom_id: int, post_ids: Sequence[int]
                       ) -> dict[int, list[Comment]]:
        """The comments the reader may see under these posts of the class, by post:
        class comments, and private threads (the instructor: every student's; a student:
        their own). `post_ids` are posts of this class (they are cached with it)."""
        role = await self._classes.authorize(reader, classroom_id, Action.VIEW_CLASS)

        async def every_comment() -> tuple[Comment, ...]:
            # All of them, kept per class; each reader's share is picked below.
            return tuple(await self._storage.list_comments(post_ids, private_of=None))

        found = await self._cache.class_memo(classroom_id, ("comments", tuple(post_ids)),
                                             every_comment)
        by_post: dict[int, list[Comment]] = {post_id: [] for post_id in post_ids}
        for comment in found:
            if may_see_comment(role, reader.id, comment.student_id):
                by_post.setdefault(comment.post_id, []).append(comment)
        return by_post

    @translate_storage_errors
    async def comment(self, author: User, post_id: int, body: object, *,
                      private: bool = False, student_id: int | None = None) -> Comment:
        """A class comment, or (`private`) one in a student's private thread with the
        instructor: a student's own thread, or the instructor's reply in `student_id`'s."""
        post, role = await self._post(author, post_id)
        await self._classes.authorize_change(author, post.classroom_id, Action.COMMENT)
        thread: int | None = None
        if private:
            thread = author.id if role == Role.STUDENT else student_id
            if thread is None:
                raise Invalid("student_id: whose private thread?")
        student_role = (await self._classes.role_of_id(thread, post.classroom_id)
                        if thread is not None else None)
        check_comment_thread(role, author.id, thread, student_role)
        text = limits.comment_body(body)
        return await self._storage.add_comment(post_id, author, thread, text, self._now())

    @translate_storage_errors
    async def delete_comment(self, user: User, comment_id: int) -> Comment:
        comment = await self._storage.get_comment(comment_id)
        post = await self._storage.get_post(comment.post_id) if comment else None
        role = await self._classes.role_of(user, post.classroom_id) if post else None
        if (comment is None or post is None or role is None
                or not may_see_comment(role, user.id, comment.student_id)):
            raise NotFound("no such comment")
        if not may_delete_comment(role, user.id, comment.author_id):
            raise Forbidden("only the instructor or its author may delete a comment")
        await self._storage.delete_comment(comment_id)
        return comment
