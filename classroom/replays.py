"""Retried requests: a client that did not hear an answer sends the same request again with
the same key (the JSON API's `Idempotency-Key` header), and gets the first answer back instead
of a second class, post or session. Keys are per user and per request path, kept a day."""

from __future__ import annotations

from typing import Final

from storage import Storage, User

from .clock import Clock, utcnow
from .errors import Conflict, Invalid, translate_storage_errors

MAX_KEY: Final = 100
_KEY_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-")


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY or not set(key) <= _KEY_CHARS:
        raise Invalid(f"Idempotency-Key must be 1 to {MAX_KEY} characters of A-Z a-z 0-9"
                      " . _ : -")
    return key


class Replays:
    def __init__(self, storage: Storage, *, clock: Clock = utcnow) -> None:
        self._storage = storage
        self._now = clock

    @translate_storage_errors
    async def begin(self, user: User, scope: str, key: str) -> str | None:
        """None: the request is new, run it, then `finish` (or `abandon` when it failed).
        Otherwise the first answer. Conflict while the first request is still running."""
        answer = await self._storage.reserve_key(user.id, scope, check_key(key), self._now())
        if answer == "":
            raise Conflict("a request with this Idempotency-Key is still running")
        return answer

    @translate_storage_errors
    async def finish(self, user: User, scope: str, key: str, answer: str) -> None:
        await self._storage.answer_key(user.id, scope, key, answer)

    @translate_storage_errors
    async def abandon(self, user: User, scope: str, key: str) -> None:
        await self._storage.release_key(user.id, scope, key)
