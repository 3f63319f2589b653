"""The whole web site as one handler: pages, the JSON API and static files on one router.

Domain errors that reach this far leave as `HTTPError`s (via `errors.http_error`), so the
server hands every error, whoever raised it, to the one `error_page`.
"""

from __future__ import annotations

import logging
import pathlib
import time
from typing import Any, Final

from classroom import metrics
from classroom.errors import ClassroomError
from classroom.services import Services
from protocol import HTTPError, Request, Response, Router, StaticFiles

from . import errors
from .api import Api
from .auth import REQUEST_USER, Sessions
from .pages import Pages
from .room_pages import RoomPages

__all__ = ["ACCESS_LOG", "STATIC_ROOT", "Site"]

# One INFO line per request; `classroom serve --quiet` turns it off.
ACCESS_LOG: Final = "web.access"
access = logging.getLogger(ACCESS_LOG)

STATIC_ROOT: Final = pathlib.Path(__file__).with_name("static")


class _AccessLog:
    """The access log's INFO records, made at a fraction of `Logger.info`'s cost.

    `Logger.info` per request walks the stack for its caller and builds a LogRecord from
    scratch (clock, thread, process), a measurable share of a cached API answer's CPU. All a
    record carries but its message and time is the same for every request of the process, so
    each one starts as a copy of the first (made in the serving thread and process) and goes
    to `Logger.handle`: the same levels, filters, handlers and format as `Logger.info`.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._fields: dict[str, Any] | None = None

    def write(self, method: str, path: str, status: int, elapsed: float, user: int | None
              ) -> None:
        if not self._logger.isEnabledFor(logging.INFO):  # serve --quiet
            return
        now = time.time()
        fields = self._fields
        if fields is None:
            first = self._logger.makeRecord(self._logger.name, logging.INFO, __file__, 0, "",
                                            (), None, "handler")
            fields = self._fields = dict(vars(first))
        record = logging.LogRecord.__new__(logging.LogRecord)
        vars(record).update(fields)
        record.msg = f"{method} {path} {status} {elapsed * 1000:.1f}ms user={user or '-'}"
        record.created = now
        record.msecs = (now - int(now)) * 1000
        record.relativeCreated = fields["relativeCreated"] + (now - fields["created"]) * 1000
        self._logger.handle(record)


class Site:
    """Pass `handler` and `error_page` to `protocol.HTTPServer`."""

    def __init__(self, services: Services, *, chat_url: str | None,
                 secure_cookies: bool = False) -> None:
        self.services = services
        # Where the live pages' JavaScript will reach the chat server (None: chat is off).
        self.chat_url = chat_url
        sessions = Sessions(services, secure_cookies=secure_cookies)
        self._router = Router()
        pages = Pages(services, sessions, chat_url=chat_url)
        pages.mount(self._router)
        self._not_found = pages.not_found()
        RoomPages(services, sessions, chat_url=chat_url).mount(self._router)
        Api(services, sessions, chat_url=chat_url).mount(self._router)
        self._router.add("GET", "/static/{path:path}", StaticFiles(STATIC_ROOT))
        self._router.add("GET", "/metrics", self._metrics)
        self._access = _AccessLog(access)
        # prometheus_client's label lookup per request costs more than the count itself.
        self._requests_by_status: dict[int, Any] = {}

    async def _metrics(self, request: Request) -> Response:
        """Prometheus's text format: what this process measures (classroom/metrics.py)."""
        return Response(200, (("Content-Type", metrics.CONTENT_TYPE),), metrics.render())

    async def handler(self, request: Request) -> Response:
        started = time.perf_counter()
        status = 500
        REQUEST_USER.set(None)  # keep-alive: the previous request's user is not this one's
        try:
            response = await self._router(request)
            status = response.status
            return response
        except ClassroomError as error:
            http_error = errors.http_error(error)
            status = http_error.status
            raise http_error from error
        except HTTPError as error:
            status = error.status
            if (status == 404 and request.method in ("GET", "HEAD")
                    and not errors.is_api(request)):
                # No route: a page still, keeping the signed-in menu.
                response = await self._not_found(request)
                status = response.status
                return response
            raise
        finally:
            elapsed = time.perf_counter() - started
            counter = self._requests_by_status.get(status)
            if counter is None:
                counter = self._requests_by_status[status] = metrics.HTTP_REQUESTS.labels(
                    str(status))
            counter.inc()
            metrics.HTTP_SECONDS.observe(elapsed)
            # The path without its query (no codes or ids of other things in the log).
            self._access.write(request.method, request.path, status, elapsed,
                               REQUEST_USER.get())

    def error_page(self, request: Request | None, error: HTTPError) -> Response:
        return errors.error_page(request, error)
