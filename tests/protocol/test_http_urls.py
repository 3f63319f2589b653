"""Targets, query strings and urlencoded forms: percent-decoding, limits, refusals."""

from __future__ import annotations

import pytest

from protocol import MAX_FORM_FIELDS, MAX_QUERY_FIELDS, HTTPError, parse_form, parse_query
from protocol.urls import parse_target


def status_of(call: object, *args: object) -> int:
    with pytest.raises(HTTPError) as info:
        call(*args)  # type: ignore[operator]
    return info.value.status


def test_query_keeps_order_repeats_and_blanks() -> None:
    assert parse_query("b=2&a=1&b=3&flag&empty=") == (
        ("b", "2"),
        ("a", "1"),
        ("b", "3"),
        ("flag", ""),
        ("empty", ""),
    )


def test_query_decodes_plus_percent_and_utf8() -> None:
    assert parse_query("q=a+b%20c&name=%C3%A9t%C3%A9&x=%2B") == (
        ("q", "a b c"),
        ("name", "été"),
        ("x", "+"),
    )


def test_query_skips_empty_pieces() -> None:
    assert parse_query("&&a=1&&") == (("a", "1"),)
    assert parse_query("") == ()


@pytest.mark.parametrize("query", ["a=%zz", "a=%4", "a=50%", "%G1=x", "a=%ff", "a=%C3%28"])
def test_query_refuses_bad_escapes_and_bad_utf8(query: str) -> None:
    assert status_of(parse_query, query) == 400


def test_query_field_limit() -> None:
    assert len(parse_query("&".join(["a=1"] * MAX_QUERY_FIELDS))) == MAX_QUERY_FIELDS
    assert status_of(parse_query, "&".join(["a=1"] * (MAX_QUERY_FIELDS + 1))) == 400


def test_form_parses_utf8_fields() -> None:
    body = b"title=Hello+world&text=caf%C3%A9+%26+cr%C3%A8me&empty="
    assert parse_form(body) == {"title": "Hello world", "text": "café & crème", "empty": ""}


def test_form_refuses_repeated_field() -> None:
    with pytest.raises(HTTPError) as info:
        parse_form(b"a=1&b=2&a=3")
    assert info.value.status == 400
    assert "repeated" in info.value.message


def test_form_field_limit() -> None:
    fields = [f"f{i}=x" for i in range(MAX_FORM_FIELDS)]
    assert len(parse_form("&".join(fields).encode())) == MAX_FORM_FIELDS
    fields.append("one=more")
    assert status_of(parse_form, "&".join(fields).encode()) == 400


@pytest.mark.parametrize("body", [b"a=%zz", b"a=%ff", "a=café".encode(), b"a=\xff"])
def test_form_refuses_bad_encoding(body: bytes) -> None:
    assert status_of(parse_form, body) == 400


def test_target_origin_form() -> None:
    assert parse_target("/a%20b/c?x=1&y=%C3%A9") == ("/a b/c", (("x", "1"), ("y", "é")))
    assert parse_target("/") == ("/", ())


def test_target_encoded_slash_decodes_like_any_escape() -> None:
    assert parse_target("/static/a%2Fb")[0] == "/static/a/b"
    assert parse_target("/static/%2e%2e/x")[0] == "/static/../x"


def test_target_absolute_form_and_asterisk() -> None:
    assert parse_target("http://example.org/p?q=1") == ("/p", (("q", "1"),))
    assert parse_target("http://example.org") == ("/", ())
    assert parse_target("*") == ("*", ())


@pytest.mark.parametrize(
    "target", ["example.org:443", "p", "/a%00b", "/a%0Ab", "/%zz", "/%ff", "/ok?a=%zz"]
)
def test_target_refusals(target: str) -> None:
    assert status_of(parse_target, target) == 400
