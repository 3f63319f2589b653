"""Cookie header parsing (lenient) and Set-Cookie building (strict)."""

from __future__ import annotations

import pytest

from protocol import format_set_cookie, parse_cookie_header
from protocol.cookies import MAX_COOKIES


def test_parse_simple_pairs() -> None:
    assert parse_cookie_header("session=abc123; theme=dark") == {
        "session": "abc123",
        "theme": "dark",
    }


def test_parse_ignores_malformed_pairs_and_keeps_good_ones() -> None:
    header = 'novalue; =nameless; bad name=1; sp=a b; q="quoted"; x=1,2; ok=yes;; ;   '
    assert parse_cookie_header(header) == {"q": "quoted", "ok": "yes"}


def test_parse_first_repeated_name_wins() -> None:
    assert parse_cookie_header("s=specific; s=general") == {"s": "specific"}


def test_parse_keeps_empty_value_and_equals_in_value() -> None:
    assert parse_cookie_header("a=; b=x=y") == {"a": "", "b": "x=y"}


def test_parse_caps_cookie_count() -> None:
    header = "; ".join(f"c{i}=v" for i in range(MAX_COOKIES + 10))
    assert len(parse_cookie_header(header)) == MAX_COOKIES


def test_parse_empty_header() -> None:
    assert parse_cookie_header("") == {}


def test_format_defaults() -> None:
    assert format_set_cookie("session", "tok") == "session=tok; Path=/; HttpOnly; SameSite=Lax"


def test_format_all_attributes() -> None:
    cookie = format_set_cookie(
        "s", "v", max_age=60, http_only=False, same_site="Strict", secure=True, path="/app"
    )
    assert cookie == "s=v; Path=/app; Max-Age=60; Secure; SameSite=Strict"


@pytest.mark.parametrize(
    ("name", "value", "options"),
    [
        ("bad name", "v", {}),
        ("", "v", {}),
        ("n", "a;b", {}),
        ("n", "a\r\nSet-Cookie: x=y", {}),
        ("n", "é", {}),
        ("n", "v", {"path": "no-slash"}),
        ("n", "v", {"path": "/a;Domain=evil"}),
        ("n", "v", {"same_site": "lax"}),
        ("n", "v", {"same_site": "None"}),
        ("n", "v", {"max_age": -1}),
    ],
)
def test_format_refuses(name: str, value: str, options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        format_set_cookie(name, value, **options)  # type: ignore[arg-type]


def test_same_site_none_with_secure_is_allowed() -> None:
    assert "SameSite=None" in format_set_cookie("n", "v", same_site="None", secure=True)
