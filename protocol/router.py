"""Method + path pattern -> handler.

Patterns are "/"-separated; a segment is either literal text or a whole-segment parameter:
  {name}       one non-empty segment (no "/")
  {name:int}   a non-negative decimal integer without leading zeros, at most 18 digits so it
               fits a signed 64-bit id ("abc", "-1", "007" do not match: 404)
  {name:path}  the rest of the path, slashes included; last segment only
Matching is against the percent-decoded path and exact: "/x/" does not match "/x" (404), so
each page has one URL. Routes are tried in the order added; an exact method match wins, and a
GET route also answers HEAD (the server drops the body).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Final, TypeVar

import attrs

from .cookies import is_token
from .errors import HTTPError
from .messages import Handler, Request, Response

__all__ = ["Router"]

_PARAMETER: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?\}")
_CONVERTERS: Final = {
    "str": r"[^/]+",
    "int": r"0|[1-9][0-9]{0,17}",
    "path": r".+",
}

_H = TypeVar("_H", bound=Handler)


@attrs.frozen
class _Route:
    method: str
    pattern: str
    regex: re.Pattern[str]
    handler: Handler


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The regex for a route pattern; ValueError for a malformed one."""
    if not pattern.startswith("/"):
        raise ValueError(f"pattern {pattern!r} must start with '/'")
    segments = pattern[1:].split("/")
    names: set[str] = set()
    parts: list[str] = []
    for index, segment in enumerate(segments):
        match = _PARAMETER.fullmatch(segment)
        if match is None:
            if "{" in segment or "}" in segment:
                raise ValueError(f"pattern {pattern!r}: a parameter must be a whole segment")
            parts.append(re.escape(segment))
            continue
        name, kind = match.group(1), match.group(2) or "str"
        if kind not in _CONVERTERS:
            raise ValueError(f"pattern {pattern!r}: unknown converter {kind!r}")
        if kind == "path" and index != len(segments) - 1:
            raise ValueError(f"pattern {pattern!r}: {{{name}:path}} must be the last segment")
        if name in names:
            raise ValueError(f"pattern {pattern!r}: parameter {name!r} repeated")
        names.add(name)
        parts.append(f"(?P<{name}>{_CONVERTERS[kind]})")
    return re.compile("/" + "/".join(parts))


class Router:
    """A Handler that dispatches to the handler registered for the method and path."""

    def __init__(self) -> None:
        self._routes: list[_Route] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        """Register `handler` for `method` on `pattern`.

        Raises ValueError for a malformed pattern or method, or a method + pattern pair that
        is already registered.
        """
        method = method.upper()
        if not is_token(method):
            raise ValueError(f"method {method!r} is not a token")
        if any(r.method == method and r.pattern == pattern for r in self._routes):
            raise ValueError(f"{method} {pattern} is already routed")
        self._routes.append(_Route(method, pattern, compile_pattern(pattern), handler))

    def route(self, method: str, pattern: str) -> Callable[[_H], _H]:
        """Decorator form of `add`: `@router.route("GET", "/rooms/{id:int}")`."""

        def register(handler: _H) -> _H:
            self.add(method, pattern, handler)
            return handler

        return register

    def resolve(self, request: Request) -> tuple[Handler, Mapping[str, str]]:
        """The handler for `request` and its path parameters.

        Raises HTTPError(404) if no pattern matches the path, HTTPError(405) with an Allow
        header if patterns match but none for this method.
        """
        allowed: set[str] = set()
        head_fallback: tuple[Handler, Mapping[str, str]] | None = None
        for route in self._routes:
            match = route.regex.fullmatch(request.path)
            if match is None:
                continue
            if route.method == request.method:
                return route.handler, match.groupdict()
            if request.method == "HEAD" and route.method == "GET" and head_fallback is None:
                head_fallback = route.handler, match.groupdict()
            allowed.add(route.method)
        if head_fallback is not None:
            return head_fallback
        if not allowed:
            raise HTTPError(404)
        if "GET" in allowed:
            allowed.add("HEAD")
        raise HTTPError(405, headers=[("Allow", ", ".join(sorted(allowed)))])

    async def __call__(self, request: Request) -> Response:
        handler, params = self.resolve(request)
        return await handler(attrs.evolve(request, params=params))
