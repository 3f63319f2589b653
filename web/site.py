"""The whole web site as one handler: pages, the JSON API and static files on one router.

Domain errors that reach this far leave as `HTTPError`s (via `errors.http_error`), so the
server hands every error, whoever raised it, to the one `error_page`.
"""

from __future__ import annotations

import logging
import pathlib
import time
from typing import Final

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


class Site:
    """Pass `handler` and `error_page` to `protocol.HTTPServer`."""

    def __init__(self, services: Services, *, chat_url: str | None,
                 secure_cookies: bool = False) -> None:
        self.services = services
        # Where the live pages' JavaScript will reach the chat server (None: chat is off).
        self.chat_url = chat_url
        sessions = Sessions(services, secure_cookies=secure_cookies)
        self._router = Router()
        Pages(services, sessions, chat_url=chat_url).mount(self._router)
        RoomPages(services, sessions, chat_url=chat_url).mount(self._router)
        Api(services, sessions, chat_url=chat_url).mount(self._router)
        self._router.add("GET", "/static/{path:path}", StaticFiles(STATIC_ROOT))
        self._router.add("GET", "/metrics", self._metrics)

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
            raise
        finally:
            elapsed = time.perf_counter() - started
            metrics.HTTP_REQUESTS.labels(str(status)).inc()
            metrics.HTTP_SECONDS.observe(elapsed)
            # The path without its query (no codes or ids of other things in the log).
            access.info("%s %s %d %.1fms user=%s", request.method, request.path, status,
                        elapsed * 1000, REQUEST_USER.get() or "-")

    def error_page(self, request: Request | None, error: HTTPError) -> Response:
        return errors.error_page(request, error)
