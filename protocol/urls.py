"""Percent-encoded text: request targets, query strings and urlencoded form bodies.

Strict on purpose: a malformed escape or non-UTF-8 text is a 400, not a silently mangled
value, and the number of fields is capped so a request cannot make us build huge lists.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Final

from .errors import HTTPError

__all__ = [
    "MAX_FORM_FIELDS",
    "MAX_QUERY_FIELDS",
    "parse_form",
    "parse_query",
    "parse_target",
]

MAX_QUERY_FIELDS: Final = 100
MAX_FORM_FIELDS: Final = 100

# A "%" not followed by two hex digits; urllib would pass it through unchanged.
_BAD_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


def parse_target(target: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Split a request target into its percent-decoded path and its parsed query.

    Accepts origin-form ("/a%20b?x=1"), absolute-form ("http://host/a?x=1", which RFC 9112
    says servers must accept) and "*" (OPTIONS). "%2F" decodes to "/" like any escape, so
    routing sees "/a/b" for "/a%2Fb". Raises HTTPError(400) for any other form, bad escapes,
    non-UTF-8 text or control characters (NUL included) in the decoded path.
    """
    if target == "*":
        return "*", ()
    if target.startswith("/"):
        raw_path, _, raw_query = target.partition("?")
    elif target.lower().startswith(("http://", "https://")):
        parts = urllib.parse.urlsplit(target)
        raw_path, raw_query = parts.path or "/", parts.query
    else:
        raise HTTPError(400, "request target must be a path")
    if _BAD_ESCAPE.search(raw_path):
        raise HTTPError(400, "bad percent-encoding in path")
    try:
        path = urllib.parse.unquote(raw_path, errors="strict")
    except UnicodeDecodeError:
        raise HTTPError(400, "path is not valid UTF-8") from None
    if _CONTROL.search(path):
        raise HTTPError(400, "control character in path")
    return path, parse_query(raw_query)


def parse_query(query: str) -> tuple[tuple[str, str], ...]:
    """Parse a query string (without the "?") into (name, value) pairs, in order.

    Repeated names are kept. Raises HTTPError(400) on bad escapes, non-UTF-8 text or more than
    MAX_QUERY_FIELDS fields.
    """
    return _parse(query, max_fields=MAX_QUERY_FIELDS, what="query")


def parse_form(body: bytes) -> dict[str, str]:
    """Parse an urlencoded form body into a dict.

    Raises HTTPError(400) on raw non-ASCII bytes, bad escapes, non-UTF-8 text, a repeated
    field name (our forms never repeat one, so a repeat is a forged or broken request) or more
    than MAX_FORM_FIELDS fields.
    """
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise HTTPError(400, "form body must be percent-encoded ASCII") from None
    form: dict[str, str] = {}
    for name, value in _parse(text, max_fields=MAX_FORM_FIELDS, what="form"):
        if name in form:
            raise HTTPError(400, f"form field {name!r} is repeated")
        form[name] = value
    return form


def _parse(text: str, *, max_fields: int, what: str) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for piece in text.split("&"):
        if not piece:  # "a=1&&b=2" and a trailing "&" are harmless
            continue
        if len(pairs) == max_fields:
            raise HTTPError(400, f"too many {what} fields (limit {max_fields})")
        name, _, value = piece.partition("=")
        pairs.append((_unescape(name, what), _unescape(value, what)))
    return tuple(pairs)


def _unescape(text: str, what: str) -> str:
    if _BAD_ESCAPE.search(text):
        raise HTTPError(400, f"bad percent-encoding in {what}")
    try:
        return urllib.parse.unquote_to_bytes(text.replace("+", " ")).decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPError(400, f"{what} is not valid UTF-8") from None
