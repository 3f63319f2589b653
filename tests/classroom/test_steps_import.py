"""Steps from Markdown and from uploads: splitting, safe rendering, and zip uploads (a Notion
export) under limits, hostile ones refused with a clear error."""

from __future__ import annotations

import base64
import io
import zipfile

import pytest

from classroom.errors import Invalid, TooLarge
from classroom.live import SPECS
from classroom.steps_import import (
    MAX_MARKDOWN,
    MAX_UPLOAD,
    MAX_ZIP_ENTRIES,
    read_upload,
    render,
    split_markdown,
)


def zipped(entries: dict[str, bytes], *, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def upload(filename: str, content: bytes) -> dict[str, str]:
    return {"filename": filename, "content_base64": base64.b64encode(content).decode()}


def test_rendering_escapes_html_and_keeps_only_http_links() -> None:
    html = render("<script>alert(1)</script> [a](javascript:alert(1)) [b](https://ok.example)"
                  " [c](/relative) ![d](data:image/png;base64,AAAA) <img src=x onerror=y>")
    assert "<script" not in html and "&lt;script&gt;" in html
    assert "<img" not in html and "javascript:" not in html.replace("(javascript:", "")
    assert '<a href="https://ok.example">b</a>' in html
    assert 'href="/relative"' not in html and 'src="data:' not in html


def test_a_notion_page_splits_at_its_sections_with_the_title_as_introduction() -> None:
    doc = ("# Lesson 3\n\nToday: loops.\n\n## For\nfor x in y\n\n"
           "## While\n```python\nwhile 1: pass\n```\n")
    steps = split_markdown(doc)
    assert [s["name"] for s in steps] == ["Lesson 3", "For", "While"]
    assert steps[0]["content"] == "Today: loops."
    assert steps[2]["type"] == "exercise" and steps[2]["language"] == "python"


def test_steps_carry_their_rendered_html() -> None:
    data = SPECS["steps/all"].clean({"steps": [
        {"name": "One", "content": "**bold** <b>raw</b>", "type": "theory"}]})
    assert data["steps"][0]["html"] == "<p><strong>bold</strong> &lt;b&gt;raw&lt;/b&gt;</p>\n"


def test_md_upload_becomes_steps() -> None:
    data = SPECS["steps/import"].clean(upload("lesson.md", b"# A\none\n# B\ntwo\n"))
    assert [s["name"] for s in data["steps"]] == ["A", "B"]


def test_notion_zip_pages_become_steps_in_order() -> None:
    content = zipped({
        "Lesson 0123456789abcdef0123456789abcdef.md": b"# Lesson\n\n## Setup\nInstall\n",
        "Lesson/Exercises 0123456789abcdef0123456789abcdef.md": b"Write a loop\n",
        "Lesson/picture.png": b"\x89PNG not read",
    })
    data = SPECS["steps/import"].clean(upload("Export.zip", content))
    assert [s["name"] for s in data["steps"]] == ["Setup", "Exercises"]


@pytest.mark.parametrize("name", ["../evil.md", "a/../../evil.md", "/abs.md", "C:/x.md",
                                  "..\\evil.md", "a\\..\\..\\b.md"])
def test_zip_with_a_path_like_name_is_refused(name: str) -> None:
    content = zipped({"ok.md": b"# Fine\n", name: b"# Evil\n"})
    with pytest.raises(Invalid, match="unsafe entry name"):
        read_upload("export.zip", content)


def test_zip_bomb_is_refused_without_unpacking_it_all() -> None:
    # 50 MB of one repeated byte compresses to about 50 KB: under the upload limit.
    bomb = zipped({"bomb.md": b"#" * 50_000_000})
    assert len(bomb) < MAX_UPLOAD
    with pytest.raises(TooLarge, match="unpacks to more than"):
        read_upload("export.zip", bomb)


def test_zip_of_many_pages_each_small_but_too_much_together_is_refused() -> None:
    page = b"x" * (MAX_MARKDOWN // 10)
    content = zipped({f"p{i}.md": page for i in range(60)})
    with pytest.raises(TooLarge):
        read_upload("export.zip", content)


def test_zip_limits_entries_size_and_kind() -> None:
    with pytest.raises(TooLarge, match="entries"):
        read_upload("x.zip", zipped({f"{i}.md": b"" for i in range(MAX_ZIP_ENTRIES + 1)}))
    with pytest.raises(TooLarge, match="upload"):
        read_upload("x.md", b"a" * (MAX_UPLOAD + 1))
    with pytest.raises(Invalid, match="not a readable zip"):
        read_upload("x.zip", b"PK\x03\x04 broken")
    with pytest.raises(Invalid, match="no Markdown"):
        read_upload("x.zip", zipped({"a.png": b"png"}))
    with pytest.raises(Invalid, match="Markdown file"):
        read_upload("x.exe", b"MZ")
    with pytest.raises(Invalid, match="UTF-8"):
        read_upload("x.md", b"\xff\xfe\x00bad")
    with pytest.raises(Invalid, match="base64"):
        SPECS["steps/import"].clean({"filename": "a.md", "content_base64": "***"})
