"""Cookie header parsing and Set-Cookie building (RFC 6265).

Parsing is lenient (browsers send what other sites on the domain set, so one bad pair must not
cost us our own session cookie); building is strict, because a bad value we emit would be a
header injection or a cookie the browser silently drops.
"""

from __future__ import annotations

import re
import string
from typing import Final

__all__ = ["MAX_COOKIES", "format_set_cookie", "is_token", "parse_cookie_header"]

# The Cookie header is already bounded by the header size limit; this bounds the dict.
MAX_COOKIES: Final = 64

_TOKEN_CHARS: Final = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")
# cookie-octet: visible ASCII except DQUOTE, comma, semicolon and backslash.
_COOKIE_VALUE: Final = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")
# Attribute values (Path) may hold anything but controls and ";".
_ATTRIBUTE_VALUE: Final = re.compile(r"[\x20-\x3a\x3c-\x7e]*")
_SAME_SITE: Final = ("Strict", "Lax", "None")


def is_token(text: str) -> bool:
    """True if `text` is a non-empty RFC 7230 token (valid header and cookie name)."""
    return bool(text) and all(char in _TOKEN_CHARS for char in text)


def parse_cookie_header(header: str) -> dict[str, str]:
    """Parse a Cookie header value ("a=1; b=2") into a dict.

    Pairs without "=", with a name that is not a token or with a value outside cookie-octets
    are skipped. A value in double quotes is unquoted. The first of repeated names wins (the
    browser sends the most specific path first). At most MAX_COOKIES cookies are kept.
    """
    cookies: dict[str, str] = {}
    for piece in header.split(";"):
        name, sep, value = piece.strip().partition("=")
        name, value = name.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if not sep or not is_token(name) or not _COOKIE_VALUE.fullmatch(value):
            continue
        if name not in cookies:
            if len(cookies) == MAX_COOKIES:
                break
            cookies[name] = value
    return cookies


def format_set_cookie(
    name: str,
    value: str,
    *,
    max_age: int | None = None,
    http_only: bool = True,
    same_site: str = "Lax",
    secure: bool = False,
    path: str = "/",
) -> str:
    """Build a Set-Cookie header value.

    Raises ValueError for a name that is not a token, a value outside cookie-octets (encode it
    first, e.g. base64url), a path that is not an absolute path of safe characters, an unknown
    SameSite, SameSite=None without Secure (browsers drop such cookies), or a negative max_age.
    """
    if not is_token(name):
        raise ValueError(f"cookie name {name!r} is not a token")
    if not _COOKIE_VALUE.fullmatch(value):
        raise ValueError(f"cookie value for {name!r} has characters a cookie cannot carry")
    if not path.startswith("/") or not _ATTRIBUTE_VALUE.fullmatch(path):
        raise ValueError(f"cookie path {path!r} is not a plain absolute path")
    if same_site not in _SAME_SITE:
        raise ValueError(f"SameSite must be one of {_SAME_SITE}, not {same_site!r}")
    if same_site == "None" and not secure:
        raise ValueError("SameSite=None needs secure=True")
    parts = [f"{name}={value}", f"Path={path}"]
    if max_age is not None:
        if max_age < 0:
            raise ValueError("max_age must be >= 0")
        parts.append(f"Max-Age={max_age}")
        if max_age == 0:
            # Old clients ignore Max-Age; a date in the past removes the cookie for them too.
            parts.append("Expires=Thu, 01 Jan 1970 00:00:00 GMT")
    if secure:
        parts.append("Secure")
    if http_only:
        parts.append("HttpOnly")
    parts.append(f"SameSite={same_site}")
    return "; ".join(parts)
