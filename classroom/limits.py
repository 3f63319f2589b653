"""Every limit on what users type, and the checks that turn bad input into `Invalid` with a
message a person can act on. Values are normalized here (trimmed, tags lower-cased) so
storage only ever sees clean data."""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from .errors import Invalid, NotFound

USERNAME_MIN: Final = 3
USERNAME_MAX: Final = 32
DISPLAY_NAME_MAX: Final = 64
PASSWORD_MIN: Final = 8
PASSWORD_MAX: Final = 1024  # argon2 hashes anything, but a megabyte password is an attack
CLASS_NAME_MAX: Final = 100
CLASS_DESCRIPTION_MAX: Final = 2000
POST_TITLE_MAX: Final = 200
POST_BODY_MAX: Final = 20_000
TAG_MAX: Final = 40
TAGS_PER_POST: Final = 10
TOPIC_MAX: Final = 200
MESSAGE_MAX: Final = 4000
COMMENT_MAX: Final = 4000
JOIN_CODE_LENGTH: Final = 10
# Ids and seqs are signed 64-bit in both databases. A bigger number names nothing, and must
# not reach SQLite, which raises OverflowError binding it.
MAX_ID: Final = 2**63 - 1

_USERNAME: Final = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_TAG: Final = re.compile(r"[\w-]+")
# Characters that exist only to confuse a reader: controls, bidi overrides, zero-width marks.
_INVISIBLE_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
# Zero-width joiner: needed inside emoji sequences such as 👩🏽‍🏫, so it stays.
_KEPT_FORMAT_CHARS: Final = frozenset({"\u200d"})


def _clean_line(value: str, field: str, maximum: int, *, required: bool = True) -> str:
    text = " ".join(value.split())
    return _check_text(text, field, maximum, required=required, multiline=False)


def _check_text(text: str, field: str, maximum: int, *, required: bool,
                multiline: bool) -> str:
    if required and not text:
        raise Invalid(f"{field} is required")
    if len(text) > maximum:
        raise Invalid(f"{field} is too long ({len(text)} characters; at most {maximum})")
    for char in text:
        if multiline and char in "\n\t":
            continue
        if (unicodedata.category(char) in _INVISIBLE_CATEGORIES
                and char not in _KEPT_FORMAT_CHARS):
            raise Invalid(f"{field} contains an invisible control character (U+{ord(char):04X})")
    return text


def username(value: str) -> str:
    """Usernames are case-insensitive: stored and compared lower-case."""
    name = value.strip().lower()
    if not USERNAME_MIN <= len(name) <= USERNAME_MAX:
        raise Invalid(f"username must be {USERNAME_MIN} to {USERNAME_MAX} characters")
    if not _USERNAME.fullmatch(name):
        raise Invalid("username may use letters a-z, digits and . _ - and must start with "
                      "a letter or digit")
    return name


def display_name(value: str) -> str:
    return _clean_line(value, "display name", DISPLAY_NAME_MAX)


def password(value: str) -> str:
    if len(value) < PASSWORD_MIN:
        raise Invalid(f"password must be at least {PASSWORD_MIN} characters")
    if len(value) > PASSWORD_MAX:
        raise Invalid(f"password must be at most {PASSWORD_MAX} characters")
    return value


def class_name(value: str) -> str:
    return _clean_line(value, "class name", CLASS_NAME_MAX)


def class_description(value: str) -> str:
    return _check_text(value.strip().replace("\r\n", "\n"), "description",
                       CLASS_DESCRIPTION_MAX, required=False, multiline=True)


def post_title(value: str) -> str:
    return _clean_line(value, "title", POST_TITLE_MAX, required=False)


def post_body(value: str) -> str:
    return _check_text(value.strip().replace("\r\n", "\n"), "text", POST_BODY_MAX,
                       required=False, multiline=True)


def topic(value: str) -> str:
    return _clean_line(value, "topic", TOPIC_MAX, required=False)


def file_name(value: str, maximum: int) -> str:
    """A shared file's path as the instructor reads it: no control, bidi or zero-width
    characters (a name can otherwise pass for another, or break the line it is shown on)."""
    return _check_text(value, "filename", maximum, required=True, multiline=False)


def message_text(value: object) -> str:
    if not isinstance(value, str):
        raise Invalid("text must be a string")
    text = value.strip().replace("\r\n", "\n")
    return _check_text(text, "message", MESSAGE_MAX, required=True, multiline=True)


def comment_body(value: object) -> str:
    if not isinstance(value, str):
        raise Invalid("body must be a string")
    return _check_text(value.strip().replace("\r\n", "\n"), "comment", COMMENT_MAX,
                       required=True, multiline=True)


def tag(value: str) -> str:
    name = value.strip().lstrip("#").lower()
    if not name:
        raise Invalid("a tag cannot be empty")
    if len(name) > TAG_MAX:
        raise Invalid(f"tag {name[:20]!r}... is too long (at most {TAG_MAX} characters)")
    if not _TAG.fullmatch(name):
        raise Invalid(f"tag {name!r} may only use letters, digits, - and _")
    return name


def tags(value: str | list[str]) -> tuple[str, ...]:
    """Tags from a comma- or space-separated string (forms) or a list (JSON); duplicates
    (in any case) collapse, order is kept."""
    items = value if isinstance(value, list) else re.split(r"[,\s]+", value)
    seen: dict[str, None] = {}
    for item in items:
        if not isinstance(item, str):
            raise Invalid("tags must be strings")
        if item.strip():
            seen[tag(item)] = None
    if len(seen) > TAGS_PER_POST:
        raise Invalid(f"at most {TAGS_PER_POST} tags per post")
    return tuple(seen)


def join_code(value: str) -> str:
    """Codes are shown upper-case and may be typed in any case, with spaces or dashes."""
    code = re.sub(r"[\s-]+", "", value).upper()
    if not code:
        raise Invalid("enter the class code your instructor gave you")
    if len(code) > 4 * JOIN_CODE_LENGTH:
        raise Invalid("that is not a class code")
    return code


def record_id(value: object, field: str, *, minimum: int = 1) -> int:
    """An id from a client (JSON): an integer >= `minimum` (else Invalid), and NotFound past
    what a database id can be, as for any other id that names nothing."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        kind = "positive" if minimum > 0 else "non-negative"
        raise Invalid(f"{field} must be a {kind} integer")
    if value > MAX_ID:
        raise NotFound(f"no such {field.removesuffix('_id')}")
    return value
