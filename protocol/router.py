"""Method + path pattern -> handler.

Patterns are "/"-separated; a segment is either literal text or a whole-segment parameter:
  {name}       one non-empty segment (no "/")
  {name:int}   a non-negative decimal integer without leading zeros, at most 18 digits so it
               fits a signed 64-bit id ("abc", "-1", "007" do not match: 404)
  {name:path}  the rest of the path, slashes included; last segment only
Matching is against the percent-decoded path and exact: "/x/" does not match "/x" (404), so
each page has one URL. Routes are tried in the order added; an exact method match wins, and a
GET route also answers HEAD (the server drops the body).

Routes are indexed by their segments, so a request tries only the few patterns whose literal
segments agree with its path, not all of them (a scan of every pattern was a visible share of
a cheap request); the pattern's regex still decides, so the index changes no answer.
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
    order: int  # when it was added: the first added wins among matches
    method: str
    pattern: str
    regex: re.Pattern[str]
    handler: Handler


class _Node:
    """The routes whose patterns agree with a path up to one segment (see `Router.resolve`)."""

    def __init__(self) -> None:
        self.literal: dict[str, _Node] = {}
        self.parameter: _Node | None = None  # {name} and {name:int}: any one segment
        self.rest: list[_Route] = []  # ends in {name:path}: one or more segments
        self.routes: list[_Route] = []  # ends here

    def add(self, segments: list[str], route: _Route) -> None:
        node = self
        for segment in segments:
            match = _PARAMETER.fullmatch(segment)
            if match is None:
                node = node.literal.setdefault(segment, _Node())
            elif match.group(2) == "path":
                node.rest.append(route)
                return
            else:
                if node.parameter is None:
                    node.parameter = _Node()
                node = node.parameter
        node.routes.append(route)

    def candidates(self, segments: list[str]) -> list[_Route]:
        """Every route whose pattern may match these segments (a superset of those that do),
        in the order added."""
        found: list[_Route] = []
        frontier = [self]
        for segment in segments:
            following: list[_Node] = []
            for node in frontier:
                found += node.rest
                child = node.literal.get(segment)
                if child is not None:
                    following.append(child)
                if node.parameter is not None:
                    following.append(node.parameter)
            if not following:
                break
            frontier = following
        else:
            for node in frontier:
                found += node.routes
        if len(found) > 1:
            found.sort(key=_order)
        return found


def _order(route: _Route) -> int:
    return route.order


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
        self._index = _Node()

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
        route = _Route(len(self._routes), method, pattern, compile_pattern(pattern), handler)
        self._routes.append(route)
        self._index.add(pattern[1:].split("/"), route)

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
        path = request.path
        # Every pattern starts with "/", so nothing else can match.
        routes = self._index.candidates(path[1:].split("/")) if path[:1] == "/" else []
        for route in routes:
            match = route.regex.fullmatch(path)
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
        return await handler(request.with_params(params))
