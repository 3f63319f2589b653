"""h11 heads to Requests, Responses to h11 events: framing rules without sockets."""

from __future__ import annotations

import h11

from protocol import HTTPError, Response, default_error_page
from protocol.wire import (
    FRAMED_BODY_BYTES,
    HTTPDate,
    ResponseFraming,
    head_size,
    request_from_head,
    response_to_h11,
)


def head(target: bytes, *headers: tuple[bytes, bytes]) -> h11.Request:
    return h11.Request(method=b"GET", target=target, headers=[(b"Host", b"x"), *headers])


def headers_of(event: h11.Response) -> list[tuple[str, str]]:
    return [(name.decode(), value.decode("latin-1")) for name, value in event.headers]


def test_request_from_head() -> None:
    request, error = request_from_head(
        head(b"/a%20b?x=1", (b"Cookie", b"s=1"), (b"X-Name", b"\xe9")), ("127.0.0.1", 5)
    )
    assert error is None
    assert (request.method, request.path, request.query) == ("GET", "/a b", (("x", "1"),))
    assert request.headers == (("host", "x"), ("cookie", "s=1"), ("x-name", "é"))
    assert request.client == ("127.0.0.1", 5)
    assert request.cookies == {"s": "1"}


def test_refused_target_still_gives_a_request_for_the_error_page() -> None:
    request, error = request_from_head(head(b"/api/v1/x?a=%zz"), None)
    assert error is not None and error.status == 400
    assert (request.path, request.query) == ("/api/v1/x", ())


def framed(response: Response, method: str | None = "GET", *, close: bool = False):  # type: ignore[no-untyped-def]
    event, body = response_to_h11(response, method=method, close=close, server="srv", date="D")
    return event.status_code, headers_of(event), body


def test_sets_length_date_server_and_drops_handler_framing() -> None:
    response = Response.text("hello").with_header("Content-Length", "999")
    response = response.with_header("Connection", "keep-alive").with_header("X-Kept", "1")
    status, headers, body = framed(response)
    assert status == 200 and body == b"hello"
    assert headers == [
        ("content-type", "text/plain; charset=utf-8"),
        ("x-kept", "1"),
        ("content-length", "5"),
        ("date", "D"),
        ("server", "srv"),
    ]


def test_head_keeps_get_length_but_no_body() -> None:
    _, headers, body = framed(Response.text("hello"), "HEAD")
    assert ("content-length", "5") in headers
    assert body == b""


def test_204_and_304_have_no_length_and_no_body() -> None:
    for status in (204, 304):
        _, headers, body = framed(Response(status, body=b"ignored"))
        assert body == b""
        assert "content-length" not in dict(headers)


def test_close_adds_connection_close() -> None:
    _, headers, _ = framed(Response(), None, close=True)
    assert ("connection", "close") in headers


def test_default_error_page_escapes_and_carries_headers() -> None:
    error = HTTPError(405, "<script>", headers=[("Allow", "GET")])
    page = default_error_page(None, error)
    assert page.status == 405
    assert b"&lt;script&gt;" in page.body and b"<script>" not in page.body
    assert page.header("allow") == "GET"
    assert page.header("content-type") == "text/html; charset=utf-8"


def test_head_size_counts_the_head_as_sent() -> None:
    raw = b"GET /abc HTTP/1.1\r\nHost: x\r\nX-Long: " + b"v" * 100 + b"\r\n\r\n"
    server = h11.Connection(h11.SERVER)
    server.receive_data(raw)
    event = server.next_event()
    assert isinstance(event, h11.Request)
    assert head_size(event) == len(raw)


def test_http_date_is_formatted_once_per_second() -> None:
    now = [784111777.25]
    date = HTTPDate(lambda: now[0])
    first = date()
    assert first == "Sun, 06 Nov 1994 08:49:37 GMT"  # RFC 9110's example
    now[0] = 784111777.99
    assert date() is first
    now[0] = 784111778.0
    assert date() == "Sun, 06 Nov 1994 08:49:38 GMT"


def test_framing_a_response_again_under_the_same_date_reuses_its_event() -> None:
    framing = ResponseFraming("srv")
    shared = Response.json({"posts": []})
    event, body = framing.frame(shared, method="GET", close=False, date="D1")
    assert framing.frame(shared, method="GET", close=False, date="D1") == (event, body)
    assert framing.frame(shared, method="GET", close=False, date="D1")[0] is event
    # What response_to_h11 would make, whatever was framed before.
    expected = response_to_h11(shared, method="GET", close=False, server="srv", date="D1")
    assert headers_of(event) == headers_of(expected[0]) and body == expected[1]
    head = framing.frame(shared, method="HEAD", close=False, date="D1")
    assert head[1] == b"" and head[0] is not event
    closing = framing.frame(shared, method="GET", close=True, date="D1")[0]
    assert ("connection", "close") in headers_of(closing)
    later = framing.frame(shared, method="GET", close=False, date="D2")[0]
    assert ("date", "D2") in headers_of(later)
    # An equal but different Response is framed on its own, the same way.
    twin = Response.json({"posts": []})
    assert framing.frame(twin, method="GET", close=False, date="D2")[0] is not later


def test_framing_does_not_keep_large_bodies() -> None:
    framing = ResponseFraming("srv")
    large = Response(200, (), b"x" * (FRAMED_BODY_BYTES + 1))
    first = framing.frame(large, method="GET", close=False, date="D")[0]
    assert framing.frame(large, method="GET", close=False, date="D")[0] is not first
