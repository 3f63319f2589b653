"""The one error family of the domain. `web/` turns these into status codes and `chat/` into
`error` events, each in one place; `status` is the HTTP hint and `code` the stable name."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import ClassVar, ParamSpec, TypeVar

from storage import Contention, DuplicateKey, StorageError, StorageUnavailable

log = logging.getLogger("classroom.errors")


class ClassroomError(Exception):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class Invalid(ClassroomError):
    status = 400
    code = "invalid"


class Unauthenticated(ClassroomError):
    status = 401
    code = "unauthenticated"


class Forbidden(ClassroomError):
    status = 403
    code = "forbidden"


class NotFound(ClassroomError):
    status = 404
    code = "not_found"


class Conflict(ClassroomError):
    status = 409
    code = "conflict"


class TooLarge(ClassroomError):
    status = 413
    code = "too_large"


class Throttled(ClassroomError):
    status = 429
    code = "throttled"


class Unavailable(ClassroomError):
    status = 503
    code = "unavailable"


class Internal(ClassroomError):
    """A bug (the database refused a statement as malformed): logged where it is raised;
    the client learns only that it failed."""

    status = 500
    code = "internal"


P = ParamSpec("P")
R = TypeVar("R")

# Seconds a client should wait before retrying after the database went away.
RETRY_AFTER_OUTAGE = 5


def translate_storage_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """The storage -> domain error boundary, applied to every public domain coroutine."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except StorageUnavailable as exc:
            raise Unavailable("the database is unavailable; try again shortly",
                              retry_after=RETRY_AFTER_OUTAGE) from exc
        except DuplicateKey as exc:
            raise Conflict("that already exists") from exc
        except Contention as exc:
            # Retried once already (storage.store._retried): the rows are that busy.
            raise Unavailable("the database is busy; try again", retry_after=1) from exc
        except StorageError as exc:
            log.exception("%s: the database refused a statement", fn.__qualname__)
            raise Internal("the server failed to handle this request") from exc

    return wrapper
