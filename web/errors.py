"""Errors out: the one place a domain error becomes an HTTP status, and an HTTP error a page.

`http_error` turns a `ClassroomError` into an `HTTPError` (keeping its stable `code` and its
Retry-After hint); `error_page` renders any `HTTPError` — ours, the router's 404/405 or the
server's own 400/408/413/431/500/503 — as JSON under /api/ and as an HTML page elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from classroom.errors import ClassroomError
from protocol import HTTPError, Request, Response

from .render import json_response, page

__all__ = [
    "API_PREFIX",
    "DomainHTTPError",
    "back_path",
    "error_code",
    "error_hint",
    "error_page",
    "http_error",
    "is_api",
    "with_error_headers",
]

API_PREFIX: Final = "/api/"

# Stable codes for errors that do not come from the domain (router, server, protocol).
_CODES: Final = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    429: "throttled",
    431: "headers_too_large",
    500: "internal_error",
    503: "unavailable",
}
# What a page adds to an error's message. None for 403: a refusal's message says why (a
# role, an expired form, a removal), and a hint about instructors was wrong for the others.
_HINTS: Final = {
    404: "There is nothing here. The link may be mistyped, or the class is not one of yours.",
    500: "Something went wrong on our side. Please try again.",
    503: "The service is busy or its database is unreachable. Please try again shortly.",
}


class DomainHTTPError(HTTPError):
    """An HTTPError that remembers the domain's code ("invalid", not just "bad_request")."""

    def __init__(self, status: int, code: str, message: str, *,
                 headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(status, message, headers=headers)
        self.code = code


def http_error(error: ClassroomError) -> DomainHTTPError:
    headers: list[tuple[str, str]] = []
    if error.retry_after is not None:
        headers.append(("Retry-After", str(error.retry_after)))
    if error.status == 401:
        # RFC 9110: a 401 names the scheme that would work.
        headers.append(("WWW-Authenticate", 'Bearer realm="classroom"'))
    return DomainHTTPError(error.status, error.code, error.message, headers=headers)


_IN_CLASS: Final = re.compile(r"/classrooms/([0-9]{1,18})/")


def error_hint(status: int) -> str:
    return _HINTS.get(status, "")


def back_path(path: str, status: int) -> str | None:
    """Where an error page leads back to: the class, for a part of it the reader may not
    use (a 404 says nothing about the class, so it only offers one's classes)."""
    match = _IN_CLASS.match(path)
    if status == 403 and match:
        return f"/classrooms/{match.group(1)}"
    return None


def error_code(error: HTTPError) -> str:
    if isinstance(error, DomainHTTPError):
        return error.code
    return _CODES.get(error.status, "error")


def is_api(request: Request | None) -> bool:
    return request is not None and request.path.startswith(API_PREFIX)


def error_page(request: Request | None, error: HTTPError) -> Response:
    """The response for `error`: `{"error": {"code", "message"}}` for the API, else a page.
    The error's own headers (Allow, Retry-After, WWW-Authenticate) are kept."""
    if is_api(request):
        body = {"error": {"code": error_code(error), "message": error.message}}
        response = json_response(body, error.status)
    else:
        response = page("error.html", error.status, error=error,
                        hint=error_hint(error.status),
                        back=back_path(request.path if request else "/", error.status))
    return with_error_headers(response, error)


def with_error_headers(response: Response, error: HTTPError) -> Response:
    for name, value in error.headers:
        response = response.with_header(name, value)
    return response
