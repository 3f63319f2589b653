"""Who is asking, and may this form be trusted: sessions, CSRF and the login redirect.

- The session token rides in the `classroom_session` cookie (browsers) or an
  `Authorization: Bearer` header (scripts, the terminal client). A Bearer header wins over
  a cookie, so a script's identity never depends on what cookies a jar happens to hold.
- Forms use double-submit CSRF: a random `classroom_csrf` cookie that every state-changing
  form repeats in a hidden `csrf` field. Another site can make a browser send our cookie but
  cannot read it, so it cannot fill the field. Signed in, the field is not the cookie but an
  HMAC of the session token keyed with it (`form_token`): a site that can set cookies for
  ours (a sibling subdomain, plain http) and so knows the CSRF cookie still lacks the session
  token, which is HttpOnly (signed out, as on the login form, there is none to bind to). The
  JSON API needs no token: it only accepts `application/json` bodies, which a cross-site
  form cannot send.
- `next` after login is honoured only as a path on this site, never `//host` or a URL.
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import hmac
import re
import secrets
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import attrs

from classroom.accounts import SESSION_COOKIE, SESSION_LIFETIME
from classroom.errors import Unauthenticated
from classroom.services import Services
from protocol import HTTPError, Request, Response

if TYPE_CHECKING:  # web/ calls classroom/, never storage/; the record types are only names
    from classroom import User

__all__ = [
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "REQUEST_USER",
    "SESSION_COOKIE",
    "Sessions",
    "Visitor",
    "login_redirect",
    "safe_next",
]

# Who the current request turned out to be (None: nobody signed in), for the access log.
REQUEST_USER: Final[contextvars.ContextVar[int | None]] = contextvars.ContextVar(
    "request_user", default=None)
CSRF_COOKIE: Final = "classroom_csrf"
CSRF_FIELD: Final = "csrf"
COOKIE_MAX_AGE: Final = int(SESSION_LIFETIME.total_seconds())
FORM_EXPIRED: Final = "This form has expired. Reload the page and try again."
# What secrets.token_urlsafe(32) makes; anything else in the cookie is replaced, not trusted.
_CSRF_SHAPE: Final = re.compile(r"[A-Za-z0-9_-]{43}")
_BEARER: Final = re.compile(r"Bearer[ \t]+(\S+)", re.IGNORECASE)


@attrs.frozen
class Visitor:
    """The signed-in user (if any) behind a request, and the token that proved it."""

    user: User | None
    token: str | None

    @property
    def me(self) -> User:
        """The user; Unauthenticated when nobody is signed in (pages turn that into the
        login redirect, the API into 401)."""
        if self.user is None:
            raise Unauthenticated("sign in first")
        return self.user


def session_token(request: Request, cookies: Mapping[str, str] | None = None) -> str | None:
    """`cookies`: the request's, when the caller has parsed them already."""
    authorization = request.header("authorization")
    if authorization is not None:
        match = _BEARER.fullmatch(authorization.strip())
        return match.group(1) if match else None
    return (request.cookies if cookies is None else cookies).get(SESSION_COOKIE) or None


def csrf_cookie(request: Request, cookies: Mapping[str, str] | None = None) -> str | None:
    """The request's CSRF cookie if it looks like one we made (`cookies`: as above)."""
    value = (request.cookies if cookies is None else cookies).get(CSRF_COOKIE, "")
    return value if _CSRF_SHAPE.fullmatch(value) else None


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def form_token(csrf: str, cookies: Mapping[str, str]) -> str:
    """What a form's `csrf` field carries for the CSRF cookie `csrf`: the cookie itself while
    no session cookie is set, else an HMAC of the session token keyed with it (43 characters
    either way)."""
    session = cookies.get(SESSION_COOKIE)
    if not session:
        return csrf
    digest = hmac.new(csrf.encode(), session.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def check_csrf(request: Request, form: Mapping[str, str]) -> None:
    """HTTPError(403) unless the form's `csrf` field is the `form_token` of the request's
    CSRF and session cookies."""
    cookies = request.cookies
    cookie = csrf_cookie(request, cookies)
    given = form.get(CSRF_FIELD, "")
    if cookie is None or not hmac.compare_digest(given.encode(),
                                                 form_token(cookie, cookies).encode()):
        raise HTTPError(403, FORM_EXPIRED)


def safe_next(value: str | None, default: str = "/classrooms") -> str:
    """`value` if it is a path on this site ("/x"), else `default`. Refuses "//host" and
    "/\\host" (browsers read both as another host) and anything with a scheme or controls."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return default
    if any(ord(char) < 0x20 or char == "\x7f" for char in value):
        return default
    if urllib.parse.urlsplit(value).netloc:
        return default
    return value


def login_redirect(request: Request) -> Response:
    """Off to /login, coming back here afterwards (a GET of this path)."""
    target = request.path
    if request.method in ("GET", "HEAD") and request.query:
        target += "?" + urllib.parse.urlencode(request.query)
    return Response.redirect("/login?" + urllib.parse.urlencode({"next": target}))


class Sessions:
    """Resolving and setting the session; the one place that touches the session cookie."""

    def __init__(self, services: Services, *, secure_cookies: bool) -> None:
        self._accounts = services.accounts
        self._secure = secure_cookies

    async def visitor(self, request: Request, cookies: Mapping[str, str] | None = None
                      ) -> Visitor:
        """`cookies`: the request's, when the caller has parsed them already (a page reads
        the CSRF cookie too: parsing the header once saves a few microseconds a page)."""
        token = session_token(request, cookies)
        user = await self._accounts.user_for_token(token) if token else None
        # For the request's access-log line (web/site.py); the token itself is never logged.
        REQUEST_USER.set(user.id if user else None)
        return Visitor(user=user, token=token if user else None)

    def signed_in(self, response: Response, token: str) -> Response:
        return response.with_cookie(SESSION_COOKIE, token, max_age=COOKIE_MAX_AGE,
                                    secure=self._secure)

    async def sign_out(self, visitor: Visitor, response: Response) -> Response:
        """Delete the session server-side (so a copied token dies too) and the cookie."""
        await self._accounts.log_out(visitor.token)
        return response.without_cookie(SESSION_COOKIE)

    def with_csrf_cookie(self, response: Response, token: str) -> Response:
        return response.with_cookie(CSRF_COOKIE, token, max_age=COOKIE_MAX_AGE,
                                    secure=self._secure)
