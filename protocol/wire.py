"""Between h11 events and our Request/Response values, with no I/O.

The server loop calls these to turn a parsed head into a Request and a Response into the h11
event plus the body bytes to send; the framing rules (Content-Length, HEAD, 204/304,
Connection) live here so they can be tested without a socket.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Final

import h11

from .errors import HTTPError
from .messages import Request, Response
from .urls import parse_target

__all__ = [
    "ErrorPage",
    "HTTPDate",
    "ResponseFraming",
    "default_error_page",
    "head_size",
    "request_from_head",
    "response_to_h11",
]

ErrorPage = Callable[[Request | None, HTTPError], Response]

# Framing and hop-by-hop headers belong to the server: a handler's copy could contradict the
# body actually sent, so they are dropped and set again from the facts.
_SERVER_OWNED: Final = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive", "date", "server"}
)
# Statuses that never carry a body (RFC 9110 6.4.1); 204 must not even send Content-Length,
# and for 304 the length of the unsent representation is not known here.
_NO_BODY_STATUSES: Final = frozenset({204, 304})
# ResponseFraming keeps at most this many framed responses, each with a body of at most
# FRAMED_BODY_BYTES, for at most one Date (a second): what it can pin is small and brief.
MAX_FRAMED: Final = 64
FRAMED_BODY_BYTES: Final = 64 * 1024


def default_error_page(request: Request | None, error: HTTPError) -> Response:
    """A small HTML page for `error`, carrying its headers."""
    title = html.escape(f"{error.status} {error.message}")
    page = (
        "<!doctype html>\n<html><head><meta charset=utf-8>"
        f"<title>{title}</title></head>\n<body><h1>{title}</h1></body></html>\n"
    )
    response = Response.html(page, error.status)
    for name, value in error.headers:
        response = response.with_header(name, value)
    return response


def head_size(head: h11.Request) -> int:
    """The size in bytes of `head` as sent, give or take optional whitespace.

    Needed because h11's max_incomplete_event_size only bounds a head that is still
    incomplete: one that arrives whole in a single read is accepted at any size.
    """
    request_line = len(head.method) + len(head.target) + len(b"  HTTP/1.1\r\n")
    fields = sum(
        len(name) + len(value) + len(b": \r\n") for name, value in head.headers.raw_items()
    )
    return request_line + fields + len(b"\r\n")


def request_from_head(
    head: h11.Request, client: tuple[str, int] | None
) -> tuple[Request, HTTPError | None]:
    """A body-less Request for a parsed head, and the error if its target was refused or
    its framing is ambiguous (both Content-Length and Transfer-Encoding: 400, then close).

    The Request is always returned, so error pages can look at the path (the web layer
    answers JSON under /api/); for a refused target its path is the raw path and the query
    is empty.
    """
    method = head.method.decode("ascii")
    target = head.target.decode("latin-1")
    # raw_items() is a plain list (iterating the Headers sequence itself goes item by item
    # through Python); names are tokens, so lower-casing them as text is h11's lower-casing.
    headers = tuple(
        (name.decode("ascii").lower(), value.decode("latin-1"))
        for name, value in head.headers.raw_items()
    )
    try:
        path, query = parse_target(target)
        request = Request(method=method.upper(), target=target, path=path, query=query,
                          headers=headers, client=client)
    except HTTPError as error:
        raw = Request(
            method=method,
            target=target,
            path=target.partition("?")[0],
            headers=headers,
            client=client,
        )
        return raw, error
    names = {name for name, _ in headers}
    if "content-length" in names and "transfer-encoding" in names:
        # RFC 9112 6.3: a message with both may be a request-smuggling attempt; answer 400
        # and close rather than pick one framing a proxy in front may not have picked.
        return request, HTTPError(400, "both Content-Length and Transfer-Encoding")
    return request, None


def response_to_h11(
    response: Response, *, method: str | None, close: bool, server: str, date: str
) -> tuple[h11.Response, bytes]:
    """The h11 event and body bytes for `response` to a `method` request.

    Sets Content-Length (the length a GET would get, also for HEAD; none for 204/304), Date,
    Server and, if `close`, Connection: close. The body is empty for HEAD, 204 and 304.
    """
    headers = [
        (name, value) for name, value in response.headers if name.lower() not in _SERVER_OWNED
    ]
    if response.status not in _NO_BODY_STATUSES:
        headers.append(("Content-Length", str(len(response.body))))
    headers.append(("Date", date))
    if server:
        headers.append(("Server", server))
    if close:
        headers.append(("Connection", "close"))
    body = response.body
    if method == "HEAD" or response.status in _NO_BODY_STATUSES:
        body = b""
    event = h11.Response(
        status_code=response.status,
        headers=[(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers],
    )
    return event, body


class HTTPDate:
    """The Date header value for now (RFC 9110 IMF-fixdate), formatted once per second:
    formatting it per response cost more than everything else in the Date's path."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._second = -1
        self._value = ""

    def __call__(self) -> str:
        second = int(self._clock())
        if second != self._second:
            self._value = formatdate(second, usegmt=True)
            self._second = second
        return self._value


class ResponseFraming:
    """`response_to_h11` that frames a Response it has already framed under the same Date
    (same HEAD-or-not, same close) once: handlers hand out one cached Response object to
    many requests (the API's per-class answers), and building and validating its h11 event
    is a large part of the cost of such a request. h11 events are immutable, so one event
    can go out on any number of connections.

    Responses are known by identity, not value (hashing a body per request would cost what
    this saves); an entry keeps its Response alive, so an id is not reused while kept.
    Everything kept is dropped when the Date changes.
    """

    def __init__(self, server: str) -> None:
        self._server = server
        self._date = ""
        self._framed: dict[tuple[int, bool, bool], tuple[Response, h11.Response, bytes]] = {}

    def frame(self, response: Response, *, method: str | None, close: bool, date: str
              ) -> tuple[h11.Response, bytes]:
        """What `response_to_h11(response, method=, close=, server=, date=)` returns."""
        if date != self._date:
            self._framed.clear()
            self._date = date
        key = (id(response), method == "HEAD", close)
        kept = self._framed.get(key)
        if kept is not None and kept[0] is response:
            return kept[1], kept[2]
        event, body = response_to_h11(
            response, method=method, close=close, server=self._server, date=date
        )
        if len(self._framed) < MAX_FRAMED and len(response.body) <= FRAMED_BODY_BYTES:
            self._framed[key] = (response, event, body)
        return event, body
