"""Posts and tags of a class's stream."""

from __future__ import annotations

from typing import Final

from storage import Post, Storage, TagCount, User

from . import limits
from .cache import Cache
from .classes import Classes
from .clock import Clock, utcnow
from .errors import Invalid, translate_storage_errors
from .rules import Action

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
        await self._classes.authorize(author, classroom_id, Action.CREATE_POST)
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
