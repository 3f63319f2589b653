"""Request accessors and body parsing; Response helpers."""

from __future__ import annotations

import json

import pytest

from protocol import HTTPError, Request, Response


def make(
    headers: tuple[tuple[str, str], ...] = (), body: bytes = b"", target: str = "/"
) -> Request:
    return Request.make("post", target, headers=headers, body=body)


def test_make_parses_target_and_lowercases() -> None:
    request = Request.make("get", "/a%20b?x=1&x=2", headers=[("X-Thing", "v")])
    assert request.method == "GET"
    assert request.target == "/a%20b?x=1&x=2"
    assert request.path == "/a b"
    assert request.query == (("x", "1"), ("x", "2"))
    assert request.headers == (("x-thing", "v"),)
    assert request.params == {}


def test_header_and_query_value_first_wins() -> None:
    request = Request.make("GET", "/?a=1&a=2", headers=[("Accept", "x"), ("accept", "y")])
    assert request.header("ACCEPT") == "x"
    assert request.header("missing") is None
    assert request.query_value("a") == "1"
    assert request.query_value("b") is None


def test_params_are_read_only() -> None:
    request = Request(method="GET", target="/", path="/", params={"id": "1"})
    assert request.params == {"id": "1"}
    with pytest.raises(TypeError):
        request.params["id"] = "2"  # type: ignore[index]


def test_cookies_from_all_cookie_headers() -> None:
    request = make(headers=(("cookie", "a=1; junk"), ("cookie", "b=2")))
    assert request.cookies == {"a": "1", "b": "2"}
    assert make().cookies == {}


FORM = (("content-type", "application/x-www-form-urlencoded; charset=UTF-8"),)
JSON = (("content-type", "Application/JSON; charset=utf-8"),)


def test_form() -> None:
    assert make(FORM, b"a=1&b=%C3%A9").form() == {"a": "1", "b": "é"}


def test_form_wrong_content_type_is_415() -> None:
    for headers in [(), (("content-type", "multipart/form-data; boundary=x"),)]:
        with pytest.raises(HTTPError) as info:
            make(headers, b"a=1").form()
        assert info.value.status == 415


def test_form_bad_body_is_400() -> None:
    with pytest.raises(HTTPError) as info:
        make(FORM, b"a=1&a=2").form()
    assert info.value.status == 400


def test_json() -> None:
    assert make(JSON, '{"a": [1, "é"]}'.encode()).json() == {"a": [1, "é"]}
    # A surrogate pair escaped is one character, not a lone surrogate.
    assert make(JSON, b'{"a": "\\ud83d\\ude00"}').json() == {"a": "\U0001f600"}


def test_json_wrong_content_type_is_415() -> None:
    with pytest.raises(HTTPError) as info:
        make((("content-type", "text/plain"),), b"{}").json()
    assert info.value.status == 415


@pytest.mark.parametrize("body", [b"", b"{", b"\xff", b"NaN", b'{"a": Infinity}', b"[" * 100_000,
                                  # Lone surrogates: no UTF-8 encoder takes them (a 500 later).
                                  b'{"username": "\\udc80"}', b'{"\\uD800": 1}',
                                  b'[["x", "\\udfff"]]', b'"\\ude00\\ud83d"'])
def test_json_bad_body_is_400(body: bytes) -> None:
    with pytest.raises(HTTPError) as info:
        make(JSON, body).json()
    assert info.value.status == 400


def test_http_error_defaults() -> None:
    error = HTTPError(404)
    assert (error.status, error.message, error.headers) == (404, "Not Found", ())
    assert str(error) == "404 Not Found"
    error = HTTPError(405, "nope", headers=[("Allow", "GET")])
    assert error.headers == (("Allow", "GET"),)
    with pytest.raises(ValueError):
        HTTPError(302)


def test_response_html_text_json() -> None:
    page = Response.html("<p>é</p>", status=201)
    assert (page.status, page.body) == (201, "<p>é</p>".encode())
    assert page.header("content-type") == "text/html; charset=utf-8"
    assert Response.text("hi").header("Content-Type") == "text/plain; charset=utf-8"
    data = Response.json({"b": "é", "a": [1, 2]})
    assert data.body == '{"b":"é","a":[1,2]}'.encode()
    assert data.header("content-type") == "application/json"
    assert json.loads(data.body) == {"b": "é", "a": [1, 2]}
    with pytest.raises(ValueError):
        Response.json(float("nan"))


def test_redirect() -> None:
    response = Response.redirect("/classrooms/1?tag=été")
    assert response.status == 303
    assert response.header("location") == "/classrooms/1?tag=%C3%A9t%C3%A9"
    assert Response.redirect("/a%20b", 307).header("location") == "/a%20b"
    with pytest.raises(ValueError):
        Response.redirect("/", 200)


def test_with_header_appends_and_validates() -> None:
    response = Response().with_header("X-A", "1").with_header("X-A", "2")
    assert response.headers == (("X-A", "1"), ("X-A", "2"))
    for name, value in [
        ("X-A", "1\r\nSet-Cookie: a=b"),
        ("Bad Name", "v"),
        ("X", "€"),
        ("X", " v"),
    ]:
        with pytest.raises(ValueError):
            Response().with_header(name, value)


def test_response_status_range() -> None:
    for status in (100, 199, 600):
        with pytest.raises(ValueError):
            Response(status)


def test_cookies_on_response() -> None:
    response = Response().with_cookie("session", "abc", max_age=3600, secure=True)
    assert response.headers == (
        ("Set-Cookie", "session=abc; Path=/; Max-Age=3600; Secure; HttpOnly; SameSite=Lax"),
    )
    gone = Response().without_cookie("session")
    cookie = gone.header("set-cookie")
    assert cookie is not None
    assert cookie.startswith("session=; Path=/; Max-Age=0;")
