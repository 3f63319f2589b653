"""Responses out: the Jinja2 environment and its filters, and the headers every page and
API answer carries.

Autoescaping is on for every template, so anything a user typed is text, never markup; no
template marks user data `|safe`; `|linkify` escapes the text and adds only http(s) anchors.
Undefined names fail loudly (StrictUndefined) instead of rendering as an empty string and
hiding a typo.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import attrs
import jinja2
from linkify_it import LinkifyIt
from markupsafe import Markup, escape

from classroom import limits
from protocol import Response

if TYPE_CHECKING:  # web/ calls classroom/, never storage/; the record type is only a name
    from classroom import User

__all__ = [
    "SECURITY_HEADERS",
    "SlottedPage",
    "html_page",
    "iso_time",
    "json_response",
    "linkify",
    "page",
    "post_tail_marker",
    "render",
    "sentence",
    "shown_time",
    "slot",
    "user_badge",
    "with_security",
]

# connect-src allows ws:/wss: because the live pages talk to a chat server that may sit on
# another port or host; everything else comes from this origin only, and nothing may frame us.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self' ws: wss:; frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS: Final = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    # Pages show one user's classes; a shared computer's back button must not replay them.
    ("Cache-Control", "no-store"),
)
_HTML_HEADERS: Final = (("Content-Type", "text/html; charset=utf-8"), *SECURITY_HEADERS)


def shown_time(value: datetime) -> str:
    """Storage times are naive UTC: say so, to the minute ("2026-11-23 14:05 UTC")."""
    return value.strftime("%Y-%m-%d %H:%M UTC")


def sentence(text: str) -> str:
    """Domain messages are lower-case clauses ("the two passwords differ"); a page shows
    them as sentences. Only the first letter changes: names and codes inside stay as typed."""
    return text[:1].upper() + text[1:]


# Only links written out with their scheme: fuzzy matches ("example.com") guess too often.
_LINKS: Final = LinkifyIt(options={"fuzzy_link": False, "fuzzy_email": False,
                                   "fuzzy_ip": False})
_LINK_SCHEMES: Final = ("http:", "https:")


def linkify(text: str) -> Markup:
    """`text` escaped, with its http(s) links as anchors (nothing else becomes markup:
    `javascript:`, `mailto:` and friends stay text). Links from users carry
    rel="noopener nofollow ugc"."""
    # Every view of a class page runs this on every post: remember the recent answers.
    # Only for plain str: a Markup equal to it would hash alike but must not be re-escaped.
    if type(text) is str:
        return _linkify_remembered(text)
    return _linkify(text)


@functools.lru_cache(maxsize=2048)
def _linkify_remembered(text: str) -> Markup:
    return _linkify(text)


def _linkify(text: str) -> Markup:
    parts: list[str] = []
    last = 0
    for match in _LINKS.match(text) or ():
        if match.schema.lower() not in _LINK_SCHEMES:
            continue
        parts.append(escape(text[last:match.index]))
        parts.append(Markup('<a href="{}" rel="noopener nofollow ugc">{}</a>')
                     .format(match.url, match.text))
        last = match.last_index
    parts.append(escape(text[last:]))
    return Markup("").join(parts)


def post_tail_marker(post_id: int) -> str:
    """Where a post's per-visitor part goes in the cached stream HTML. User text cannot
    forge it: autoescaping turns every `<` of user data into `&lt;`."""
    return f"<!--post-tail {int(post_id)}-->"


# A slot in a page rendered once for many visitors: where one visitor's own bytes go. User
# text cannot forge one: autoescaping turns every `<` of user data into `&lt;`.
_SLOT: Final = re.compile(r"<!--slot:([a-z]+)-->")


def slot(name: str) -> Markup:
    """The marker a template renders where the visitor's `name` goes (see SlottedPage)."""
    return Markup(f"<!--slot:{name}-->")


@attrs.frozen
class SlottedPage:
    """A page rendered once and shared by many visitors, kept as UTF-8 bytes split at its
    slots, so serving it to one visitor is a few joins of bytes: no template, no encoding.

    The bytes are split at the rarest slot, each piece at the next, and so on (`tree`
    nests as deep as there are slot names): filling one is then one `bytes.join` per piece
    with the slot's value as the separator, all in C, whatever the number of slots."""

    slots: tuple[str, ...]  # the names, rarest first; none: `tree` is (the page,)
    tree: tuple[Any, ...]

    @classmethod
    def split(cls, html: str) -> SlottedPage:
        found = _SLOT.findall(html)
        names = tuple(sorted(set(found), key=lambda name: (found.count(name), name)))

        def nest(text: bytes, names: tuple[str, ...]) -> tuple[Any, ...]:
            pieces = text.split(slot(names[0]).encode())
            if len(names) == 1:
                return tuple(pieces)
            return tuple(nest(piece, names[1:]) for piece in pieces)

        return cls(names, nest(html.encode(), names) if names else (html.encode(),))

    def fill(self, values: Mapping[str, bytes]) -> bytes:
        """The page with every slot filled; KeyError for a slot `values` does not fill (a
        page never goes out with a slot open, nor with someone else's bytes in it)."""
        if not self.slots:
            return bytes(self.tree[0])
        return _joined(self.tree, self.slots, values)


def _joined(tree: tuple[Any, ...], names: tuple[str, ...], values: Mapping[str, bytes]
            ) -> bytes:
    if len(names) == 1:
        return values[names[0]].join(tree)
    return values[names[0]].join([_joined(piece, names[1:], values) for piece in tree])


def iso_time(value: datetime) -> str:
    """ISO 8601 UTC with "Z", to the second: the precision both databases keep."""
    return value.replace(microsecond=0).isoformat() + "Z"


_ENV: Final = jinja2.Environment(
    loader=jinja2.PackageLoader("web", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    # Templates are compiled once per process: no stat of the file on every render.
    auto_reload=False,
)
_ENV.filters["when"] = shown_time
_ENV.filters["iso"] = iso_time
_ENV.filters["sentence"] = sentence
_ENV.filters["linkify"] = linkify
_ENV.globals["post_tail"] = lambda post_id: Markup(post_tail_marker(post_id))
# Forms show the same limits the domain enforces (maxlength, hints), from the one place.
_ENV.globals["limits"] = limits


def render(template: str, **context: Any) -> str:
    return _ENV.get_template(template).render(**context)


@functools.lru_cache(maxsize=4096)
def user_badge(user: User) -> bytes:
    """The page header's "signed in as" for `user` (the `who` macro), for a SlottedPage's
    `who` slot. Kept per user record: a renamed user is another record."""
    who = _ENV.get_template("_macros.html").module.who  # type: ignore[attr-defined]
    return str(who(user)).encode()


def with_security(response: Response) -> Response:
    """`response` with the security headers it does not set itself (static files keep their
    own Cache-Control)."""
    missing = tuple((name, value) for name, value in SECURITY_HEADERS
                    if response.header(name) is None)
    return attrs.evolve(response, headers=response.headers + missing) if missing else response


def page(template: str, status: int = 200, **context: Any) -> Response:
    return with_security(Response.html(render(template, **context), status))


def html_page(body: bytes, status: int = 200) -> Response:
    """`page` for HTML already encoded (a filled SlottedPage)."""
    return Response(status, _HTML_HEADERS, body)


def json_response(body: Any, status: int = 200) -> Response:
    """API answers carry the same headers: nosniff and no-store matter for JSON too."""
    return with_security(Response.json(body, status))
