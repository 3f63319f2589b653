"""Every parser of user text runs in time linear in its input: each is fed adversarial input
at its size limit (the shapes that make a backtracking regular expression go quadratic or
worse) and must finish within a CPU-time bound that is generous for linear work.

The bound is CPU time of the worker thread (`time.thread_time`), not wall time, so a loaded
machine does not make these flaky; the `fail_after` turns a runaway parser into a failure
instead of a hung suite (the thread is abandoned). Before the heading parser was rewritten,
a heading of 4,000 spaces took about a minute; 200 KB would take days.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest
import trio

from classroom import limits
from classroom.errors import ClassroomError
from classroom.live import MAX_IGNORE_TEXT, SPECS, parse_ignore_rules
from classroom.steps_import import MAX_MARKDOWN, render, split_markdown
from protocol.cookies import parse_cookie_header
from protocol.envelope import MAX_FRAME_BYTES, EnvelopeError, parse_envelope
from protocol.errors import HTTPError
from protocol.messages import Response
from protocol.server import HTTPLimits
from protocol.urls import parse_form, parse_query, parse_target

# Linear work on these sizes takes at most about a second of CPU (markdown-it on 200 KB);
# the quadratic and worse cases these inputs provoke take minutes to days.
CPU_BOUND_SECONDS = 5.0
WALL_BOUND_SECONDS = 60.0
HEADER_LIMIT = HTTPLimits().max_header_bytes
BODY_LIMIT = HTTPLimits().max_body_bytes


def _tolerant(parse: Callable[[Any], object], value: Any) -> None:
    """Run `parse`; refusing the input is as good as accepting it, as long as it is fast."""
    with contextlib.suppress(HTTPError, EnvelopeError, ValueError, ClassroomError):
        parse(value)


async def assert_linear(parse: Callable[[Any], object], value: Any) -> None:
    def timed() -> float:
        start = time.thread_time()
        _tolerant(parse, value)
        return time.thread_time() - start

    with trio.fail_after(WALL_BOUND_SECONDS):
        spent = await trio.to_thread.run_sync(timed, abandon_on_cancel=True)
    assert spent < CPU_BOUND_SECONDS, f"{spent:.2f} s of CPU for {len(value)} characters"


def _fit(prefix: str, filler: str, suffix: str, size: int) -> str:
    count = (size - len(prefix) - len(suffix)) // len(filler)
    return prefix + filler * count + suffix


MARKDOWN_ATTACKS = {
    "heading of spaces": _fit("# a", " ", "b", MAX_MARKDOWN),
    "heading of spaces only": _fit("#", " ", "", MAX_MARKDOWN),
    "heading of hashes": _fit("# ", "#", " x", MAX_MARKDOWN),
    "heading of space-hash pairs": _fit("# a", " #", "b", MAX_MARKDOWN),
    "heading of tabs and hashes": _fit("##\t", "\t#", "\t\x0b", MAX_MARKDOWN),
    "many headings": _fit("", "# h\n", "", MAX_MARKDOWN),
    "many fences": _fit("# a\n", "```x\n", "", MAX_MARKDOWN),
    "hashes only": _fit("", "#", "", MAX_MARKDOWN),
}


@pytest.mark.parametrize("attack", MARKDOWN_ATTACKS)
async def test_markdown_split_is_linear(attack: str) -> None:
    document = MARKDOWN_ATTACKS[attack]
    assert len(document) <= MAX_MARKDOWN
    await assert_linear(split_markdown, document)
    await assert_linear(SPECS["steps/import"].clean, {"markdown": document})


# CommonMark's own pathological cases (markdown-it-py parses and renders the steps).
N = MAX_MARKDOWN // 12
RENDER_ATTACKS = {
    "nested strong emphasis": "*a **a " * (N * 6 // 7) + " a** a*" * (N * 6 // 7),
    "emphasis closers": "a**" * N * 3,
    "emphasis openers": "**a" * N * 3,
    "unclosed links": "[a](b" * N * 2,
    "nested brackets": "[" * N * 5 + "a" + "]" * N * 5,
    "link closers": "a]" * N * 5,
    "backticks": "`a``" * N * 2,
    "nested blockquotes": "> " * N * 5,
    "nested lists": "- " * N * 5,
    "entities": "&#" * N * 5,
    "autolinks": "<" * N * 10,
    "mixed emphasis": "*a_ " * N * 2,
    "reference definitions": "[a]: b\n" * N,
}


@pytest.mark.parametrize("attack", RENDER_ATTACKS)
async def test_markdown_render_is_linear(attack: str) -> None:
    document = RENDER_ATTACKS[attack]
    assert len(document) <= MAX_MARKDOWN
    await assert_linear(render, document)
    await assert_linear(split_markdown, "# a\n" + document)


IGNORE_ATTACKS = {
    "extension run": _fit("*.", "a", "!", MAX_IGNORE_TEXT),
    "dots": _fit("*", ".", "/x", MAX_IGNORE_TEXT),
    "blank lines": _fit("", "\n", "", MAX_IGNORE_TEXT),
    "slashes": _fit("", "/", "", MAX_IGNORE_TEXT),
}


@pytest.mark.parametrize("attack", IGNORE_ATTACKS)
async def test_gitignore_settings_are_linear(attack: str) -> None:
    await assert_linear(parse_ignore_rules, IGNORE_ATTACKS[attack])
    await assert_linear(SPECS["settings"].clean, {"files_to_ignore": IGNORE_ATTACKS[attack]})


# Tags, codes and names arrive in form fields and JSON bodies: the body limit bounds them.
FIELD_ATTACKS: dict[str, tuple[Callable[[Any], object], str]] = {
    "tags of separators": (limits.tags, _fit("a", " ,", "b", BODY_LIMIT)),
    "tags of hyphens": (limits.tags, _fit("", "-", "!", BODY_LIMIT)),
    "join code of dashes": (limits.join_code, _fit("A", "- ", "B", BODY_LIMIT)),
    "username": (limits.username, _fit("a", ".", "!", BODY_LIMIT)),
    "display name": (limits.display_name, _fit("a", " \t", "b", BODY_LIMIT)),
    "message": (limits.message_text, _fit("a", "\r\n", "\x00", BODY_LIMIT)),
}


@pytest.mark.parametrize("attack", FIELD_ATTACKS)
async def test_form_fields_are_linear(attack: str) -> None:
    parse, value = FIELD_ATTACKS[attack]
    await assert_linear(parse, value)


HTTP_ATTACKS: dict[str, tuple[Callable[[Any], object], Any]] = {
    "form of bad escapes": (parse_form, _fit("a=", "%%", "", BODY_LIMIT).encode()),
    "form of good escapes": (parse_form, _fit("a=", "%41", "", BODY_LIMIT).encode()),
    "form of ampersands": (parse_form, _fit("a=1", "&", "", BODY_LIMIT).encode()),
    "form of pluses": (parse_form, _fit("a=", "+", "%", BODY_LIMIT).encode()),
    "target of escapes": (parse_target, _fit("/", "%4", "", HEADER_LIMIT)),
    "target of slashes": (parse_target, _fit("http://x", "/", "\x01", HEADER_LIMIT)),
    "query": (parse_query, _fit("", "a=%%&", "", HEADER_LIMIT)),
    "cookies of semicolons": (parse_cookie_header, _fit("a=1", ";", "", HEADER_LIMIT)),
    "cookie of quotes": (parse_cookie_header, _fit("a=", '"', "", HEADER_LIMIT)),
    "cookie of equals": (parse_cookie_header, _fit("a", "=", ";", HEADER_LIMIT)),
    "header value with inner spaces": (lambda v: Response(headers=[("X", v)]),
                                       _fit("a", " a", " \x00", HEADER_LIMIT)),
}


@pytest.mark.parametrize("attack", HTTP_ATTACKS)
async def test_http_parsers_are_linear(attack: str) -> None:
    parse, value = HTTP_ATTACKS[attack]
    await assert_linear(parse, value)


ENVELOPE_ATTACKS = {
    "deep nesting": _fit('{"event":"message","data":', "[", "", MAX_FRAME_BYTES),
    "long event name": '{"event":"' + _fit("a", "/a", "!", MAX_FRAME_BYTES - 20) + '"}',
    "huge number": '{"event":"message","ref":' + _fit("1", "0", "", MAX_FRAME_BYTES - 30) + "}",
    "long string of escapes": '{"event":"m","data":{"t":"'
                              + _fit("", "\\u00e9", "", MAX_FRAME_BYTES - 40) + '"}}',
    "many keys": "{" + _fit("", '"a":1,', '"event":"m"', MAX_FRAME_BYTES - 2) + "}",
}


@pytest.mark.parametrize("attack", ENVELOPE_ATTACKS)
async def test_envelope_is_linear(attack: str) -> None:
    await assert_linear(parse_envelope, ENVELOPE_ATTACKS[attack])


# Posts and chat messages are shown with their links made clickable (linkify-it-py).
LINKIFY_ATTACKS = {
    "dotted host": _fit("http://", "a.", "", limits.POST_BODY_MAX),
    "slashes": _fit("http://a", "/", "", limits.POST_BODY_MAX),
    "brackets": _fit("http://a/", "([", "", limits.POST_BODY_MAX),
    "schemes": _fit("", "http://", "", limits.POST_BODY_MAX),
    "links": _fit("", "http://a ", "", limits.POST_BODY_MAX),
    "userinfo": _fit("http://", "a@", "", limits.POST_BODY_MAX),
    "ports": _fit("http://a:", "1", "", limits.POST_BODY_MAX),
}


@pytest.mark.parametrize("attack", LINKIFY_ATTACKS)
async def test_linkify_is_linear(attack: str) -> None:
    from web.render import linkify

    await assert_linear(linkify, LINKIFY_ATTACKS[attack])
