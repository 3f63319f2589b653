"""What users type: limits, normalization, and the parsers of live.py (gitignore rules,
Markdown steps, shared files)."""

from __future__ import annotations

import pytest

from classroom import limits
from classroom.classes import JOIN_CODE_ALPHABET, new_join_code
from classroom.errors import Invalid, TooLarge
from classroom.live import SPECS, parse_ignore_rules
from classroom.steps_import import split_markdown


@pytest.mark.parametrize(("raw", "clean"), [("Ada", "ada"), ("  grace.h ", "grace.h"),
                                            ("a_b-c", "a_b-c")])
def test_usernames_are_lower_case_and_trimmed(raw: str, clean: str) -> None:
    assert limits.username(raw) == clean


@pytest.mark.parametrize("raw", ["ab", "x" * 33, "-ada", "ad a", "ada!", "<b>", "é" * 5])
def test_bad_usernames_are_refused(raw: str) -> None:
    with pytest.raises(Invalid):
        limits.username(raw)


def test_passwords_have_a_minimum_and_a_maximum() -> None:
    limits.password("12345678")
    for bad in ("1234567", "x" * (limits.PASSWORD_MAX + 1)):
        with pytest.raises(Invalid):
            limits.password(bad)


def test_text_keeps_markup_and_emoji_but_refuses_invisible_controls() -> None:
    title = "<script>alert(1)</script> '; DROP TABLE users; -- 👩🏽‍🏫"
    assert limits.post_title(title) == title
    assert limits.post_body("line one\r\nline two\tend") == "line one\nline two\tend"
    for bad in ("bell\x07", "rtl\u202eoverride", "zero\u200bwidth"):
        with pytest.raises(Invalid):
            limits.post_title(bad)


def test_over_long_text_is_refused_with_the_numbers() -> None:
    with pytest.raises(Invalid, match=r"20001 characters; at most 20000"):
        limits.post_body("x" * 20_001)
    assert limits.post_body("x" * 20_000) == "x" * 20_000


def test_tags_are_case_insensitive_deduplicated_and_bounded() -> None:
    assert limits.tags("Week1, lab  #Lab week1") == ("week1", "lab")
    assert limits.tags(["A", "b"]) == ("a", "b")
    assert limits.tags("") == ()
    with pytest.raises(Invalid):
        limits.tags("bad/tag")
    with pytest.raises(Invalid):
        limits.tags(" ".join(f"t{i}" for i in range(limits.TAGS_PER_POST + 1)))


def test_join_codes_are_random_unambiguous_and_forgiving_to_type() -> None:
    codes = {new_join_code() for _ in range(200)}
    assert len(codes) == 200
    assert all(len(c) == limits.JOIN_CODE_LENGTH and set(c) <= set(JOIN_CODE_ALPHABET)
               for c in codes)
    assert not set("01OIL") & set(JOIN_CODE_ALPHABET)
    # >= 40 bits of entropy
    assert len(JOIN_CODE_ALPHABET) ** limits.JOIN_CODE_LENGTH >= 2**40
    assert limits.join_code(" abcd-efgh jk ") == "ABCDEFGHJK"


def test_gitignore_rules_split_into_names_dirs_and_extensions() -> None:
    text = "# comment\n\nnode_modules/\n/build/\n*.pyc\n*.tar.gz\n.env\n!keep.txt\nsecret.txt\n"
    assert parse_ignore_rules(text) == {
        "names": [".env", "secret.txt"],
        "dirs": ["node_modules", "build"],
        "extensions": [".pyc", ".tar.gz"],
    }


def test_markdown_splits_into_steps_at_the_top_heading_level() -> None:
    doc = ("Welcome to the lab.\n\n# Setup\nInstall things.\n\n## Detail\nmore\n\n"
           "# Exercise\nWrite it:\n```python\n# not a heading\nprint(1)\n```\n")
    steps = split_markdown(doc)
    assert [s["name"] for s in steps] == ["Introduction", "Setup", "Exercise"]
    assert steps[1]["content"] == "Install things.\n\n## Detail\nmore"
    assert steps[1]["type"] == "theory"
    assert steps[2]["type"] == "exercise" and steps[2]["language"] == "python"
    assert "# not a heading" in steps[2]["content"]


def test_markdown_without_headings_is_refused_by_steps_import() -> None:
    with pytest.raises(Invalid):
        SPECS["steps/import"].clean({"markdown": "   "})


def test_shared_files_are_checked_and_bounded() -> None:
    clean = SPECS["sharing/code_send"].clean
    ok = clean({"files": [{"filename": "src/a.py", "status": "NEW", "content": "x = 1"}]})
    assert ok == {"files": [{"filename": "src/a.py", "status": "new", "content": "x = 1"}]}
    # Control, bidi and zero-width characters: a name that passes for another, or breaks
    # the instructor's line ("a\u202eyp.exe" shows as "aexe.py").
    for bad in ("../etc/passwd", "/abs.py", "a\x00b", "a\nb<script>", "a\u202eyp.exe",
                "zero\u200bwidth.py", "tab\there.py"):
        with pytest.raises(Invalid):
            clean({"files": [{"filename": bad, "content": ""}]})
    assert clean({"files": [{"filename": "notes/日本語 é.md", "content": ""}]})["files"][0][
        "filename"] == "notes/日本語 é.md"
    with pytest.raises(TooLarge):
        clean({"files": [{"filename": f"f{i}", "content": ""} for i in range(51)]})
    with pytest.raises(TooLarge):
        clean({"files": [{"filename": "big", "content": "é" * 300_000}]})
