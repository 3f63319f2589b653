"""Typed values out of requests: query numbers and JSON fields, refused with a clear 400."""

from __future__ import annotations

from typing import Any, Final

import attrs

from classroom.errors import Invalid
from protocol import HTTPError, Request

__all__ = ["json_object", "json_tags", "json_text", "query_int"]

# Ids are signed 64-bit in the database; more digits than that is not an id.
_MAX_DIGITS: Final = 18


def query_int(request: Request, name: str) -> int | None:
    """`?name=` as a non-negative int, None when absent or empty."""
    value = request.query_value(name)
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > _MAX_DIGITS:
        raise Invalid(f"{name} must be a whole number")
    return int(value)


def json_object(request: Request) -> dict[str, Any]:
    """The JSON object sent; 415 for another Content-Type, 400 for anything but an object.
    An empty body counts as `{}` (logout needs no fields) but must still be declared JSON."""
    # protocol's json() owns the Content-Type rule, so an empty body is checked as "{}".
    data = (request if request.body else attrs.evolve(request, body=b"{}")).json()
    if not isinstance(data, dict):
        raise HTTPError(400, "the body must be a JSON object")
    return data


def json_text(payload: dict[str, Any], name: str) -> str:
    """A string field; missing is "" (the domain says what is required)."""
    value = payload.get(name, "")
    if not isinstance(value, str):
        raise Invalid(f"{name} must be a string")
    return value


def json_tags(payload: dict[str, Any]) -> str | list[str]:
    """Tags as a list of strings or one comma/space-separated string, as forms send them."""
    value = payload.get("tags", [])
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise Invalid("tags must be a list of strings or one comma-separated string")
