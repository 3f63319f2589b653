"""Request and Response: the frozen values handlers take and return.

Nothing here does I/O. The server builds a Request from a parsed head and a fully read body,
and turns a Response into bytes; handlers, the router and tests only see these values.
"""

from __future__ import annotations

import json as jsonlib
import re
import types
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final

import attrs

from .cookies import format_set_cookie, is_token, parse_cookie_header
from .errors import HTTPError
from .surrogates import has_lone_surrogate
from .urls import parse_form, parse_target

__all__ = ["Handler", "Request", "Response"]

# What h11 accepts as a field value: visible chars with inner spaces/tabs, no CR/LF/NUL, no
# leading or trailing whitespace. Checked when a Response is built, so a bad header is a
# ValueError at the line that made it rather than a 500 deep in the server.
_HEADER_VALUE: Final = re.compile(r"([\x21-\x7e\x80-\xff]+([ \t]+[\x21-\x7e\x80-\xff]+)*)?")
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
# Characters left as they are when a redirect location is percent-encoded: everything that
# may appear in a URL, "%" included so existing escapes survive.
_URL_SAFE: Final = "!#$%&'()*+,-./:;=?@[]~_"


def _frozen_params(params: Mapping[str, str]) -> Mapping[str, str]:
    return types.MappingProxyType(dict(params))


def _media_type(content_type: str | None) -> str:
    return (content_type or "").partition(";")[0].strip().lower()


@attrs.frozen
class Request:
    """One HTTP request with its whole body.

    `path` is percent-decoded ("/a b"), `target` is as sent. Header names are lower-case and
    values latin-1 decoded, in the order received. `params` holds the router's `{name}`
    captures. Build one from a raw target with `Request.make`.
    """

    method: str
    target: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    client: tuple[str, int] | None = None
    params: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_params)

    @classmethod
    def make(
        cls,
        method: str,
        target: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        client: tuple[str, int] | None = None,
    ) -> Request:
        """Build a Request from a raw target; header names are lower-cased.

        Raises HTTPError(400) for a target `parse_target` refuses.
        """
        path, query = parse_target(target)
        return cls(
            method=method.upper(),
            target=target,
            path=path,
            query=query,
            headers=tuple((name.lower(), value) for name, value in headers),
            body=body,
            client=client,
        )

    def header(self, name: str) -> str | None:
        """The first value of header `name` (any case), or None."""
        name = name.lower()
        for key, value in self.headers:  # a plain loop: several calls per request
            if key == name:
                return value
        return None

    def query_value(self, name: str) -> str | None:
        """The first value of query parameter `name`, or None."""
        for key, value in self.query:
            if key == name:
                return value
        return None

    def with_params(self, params: Mapping[str, str]) -> Request:
        """A copy with the router's `{name}` captures (what attrs.evolve would make, at a
        fraction of its per-request cost)."""
        return Request(self.method, self.target, self.path, self.query, self.headers,
                       self.body, self.client, params)

    @property
    def cookies(self) -> Mapping[str, str]:
        """The Cookie header(s) parsed; malformed pairs are ignored, the first name wins."""
        header = "; ".join(value for key, value in self.headers if key == "cookie")
        return parse_cookie_header(header)

    def form(self) -> dict[str, str]:
        """The body as an application/x-www-form-urlencoded form.

        Raises HTTPError(415) if the Content-Type is not that, HTTPError(400) for raw non-ASCII
        bytes, bad escapes, non-UTF-8 text, a repeated field or more than MAX_FORM_FIELDS.
        """
        if _media_type(self.header("content-type")) != "application/x-www-form-urlencoded":
            raise HTTPError(415, "expected an application/x-www-form-urlencoded body")
        return parse_form(self.body)

    def json(self) -> Any:
        """The body parsed as JSON.

        Raises HTTPError(415) unless the Content-Type is application/json, HTTPError(400) for
        a body that is not UTF-8 JSON (NaN and Infinity included: they are not JSON) or that
        nests too deep to parse.
        """
        if _media_type(self.header("content-type")) != "application/json":
            raise HTTPError(415, "expected an application/json body")
        try:
            text = self.body.decode("utf-8")
            value = jsonlib.loads(text, parse_constant=_refuse_constant)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise HTTPError(400, "body is not valid JSON") from None
        if has_lone_surrogate(text, value):
            raise HTTPError(400, "body holds a lone surrogate escape (\\udXXX): not Unicode")
        return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_headers(
    instance: Response, attribute: attrs.Attribute[Any], headers: tuple[tuple[str, str], ...]
) -> None:
    for name, value in headers:
        if not is_token(name):
            raise ValueError(f"header name {name!r} is not a token")
        if not _HEADER_VALUE.fullmatch(value):
            raise ValueError(f"header {name}: value {value!r} cannot be sent")


def _check_status(instance: Response, attribute: attrs.Attribute[Any], status: int) -> None:
    # 1xx are interim responses the server sends itself (100 Continue), never a final answer.
    if not 200 <= status <= 599:
        raise ValueError(f"response status must be 200-599, not {status}")


def _headers_tuple(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((name, value) for name, value in headers)


@attrs.frozen
class Response:
    """A complete response. The server adds Content-Length, Date, Server and Connection,
    replacing any the handler set, and drops the body for HEAD, 204 and 304.

    Header names must be tokens and values sendable as latin-1 without CR/LF (ValueError).
    """

    status: int = attrs.field(default=200, validator=_check_status)
    headers: tuple[tuple[str, str], ...] = attrs.field(
        default=(), converter=_headers_tuple, validator=_check_headers
    )
    body: bytes = b""

    @classmethod
    def html(cls, text: str, status: int = 200) -> Response:
        return cls(status, (("Content-Type", "text/html; charset=utf-8"),), text.encode())

    @classmethod
    def text(cls, text: str, status: int = 200) -> Response:
        return cls(status, (("Content-Type", "text/plain; charset=utf-8"),), text.encode())

    @classmethod
    def json(cls, obj: Any, status: int = 200) -> Response:
        """Compact UTF-8 JSON. Raises ValueError for NaN/Infinity, TypeError for objects the
        json module cannot encode."""
        text = jsonlib.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return cls(status, (("Content-Type", "application/json"),), text.encode())

    @classmethod
    def redirect(cls, location: str, status: int = 303) -> Response:
        """Redirect to `location`; non-ASCII and spaces in it are percent-encoded.

        Raises ValueError unless status is 301, 302, 303, 307 or 308.
        """
        if status not in _REDIRECT_STATUSES:
            raise ValueError(f"{status} is not a redirect status")
        location = urllib.parse.quote(location, safe=_URL_SAFE)
        return cls(status, (("Location", location),))

    def header(self, name: str) -> str | None:
        """The first value of header `name` (any case), or None."""
        name = name.lower()
        return next((value for key, value in self.headers if key.lower() == name), None)

    def with_header(self, name: str, value: str) -> Response:
        """A copy with one more header line (appended: existing ones of that name stay)."""
        return attrs.evolve(self, headers=(*self.headers, (name, value)))

    def with_cookie(
        self,
        name: str,
        value: str,
        *,
        max_age: int | None = None,
        http_only: bool = True,
        same_site: str = "Lax",
        secure: bool = False,
        path: str = "/",
    ) -> Response:
        """A copy that sets a cookie; see `format_set_cookie` for what raises ValueError."""
        cookie = format_set_cookie(
            name,
            value,
            max_age=max_age,
            http_only=http_only,
            same_site=same_site,
            secure=secure,
            path=path,
        )
        return self.with_header("Set-Cookie", cookie)

    def without_cookie(self, name: str, *, path: str = "/") -> Response:
        """A copy that tells the browser to delete cookie `name` (Max-Age=0) at `path`."""
        return self.with_cookie(name, "", max_age=0, path=path)


Handler = Callable[[Request], Awaitable[Response]]
