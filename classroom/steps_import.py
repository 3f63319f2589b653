"""A lesson's steps from Markdown: splitting a document (or a Notion export) into steps, and
rendering a step's Markdown to HTML for the browser.

Markdown is parsed by markdown-it-py (CommonMark, raw HTML off, so `<script>` stays text).
Links and images keep only http(s) addresses: anything else (javascript:, data:, relative
paths into a Notion export) is rendered as plain text. Nothing here fetches a URL.

Uploads come as bytes of a `.md` file or a Notion-export `.zip`. A zip is read in memory under
limits checked before anything is stored: the upload's size, the number of entries, the size
of every Markdown entry (read with a cap, never trusting the size its header claims) and of
all of them together, and entry names (no absolute or `..` paths). Anything past a limit
refuses the whole upload.
"""

from __future__ import annotations

import io
import re
import zipfile
from typing import Final

from markdown_it import MarkdownIt
from markdown_it.token import Token

from .errors import Invalid, TooLarge

# The upload crosses the WebSocket base64-encoded inside a 1 MiB frame.
MAX_UPLOAD: Final = 700 * 1024
MAX_ZIP_ENTRIES: Final = 200
MAX_ENTRY_NAME: Final = 255
# The whole lesson's Markdown, and so the unpacked size of a zip's Markdown entries.
MAX_MARKDOWN: Final = 200_000
MAX_STEP_NAME: Final = 200
MAX_STEP_CONTENT: Final = 20_000
MAX_LANGUAGE: Final = 40
# A Notion export names each page "Title <32 hex digits>.md".
_NOTION_ID: Final = re.compile(r"\s+[0-9a-f]{32}$")
_SAFE_SCHEMES: Final = ("http://", "https://")


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False})
    md.validateLink = _safe_link  # type: ignore[method-assign]
    return md


def _safe_link(url: str) -> bool:
    return url.strip().lower().startswith(_SAFE_SCHEMES)


_MD: Final = _parser()


def render(markdown: str) -> str:
    """Markdown -> HTML safe to insert into a page (raw HTML escaped, http(s) links only)."""
    html: str = _MD.render(markdown)
    return html


def split_markdown(markdown: str) -> list[dict[str, str]]:
    """A document -> steps, one per heading of the shallowest level used (headings inside
    code blocks do not count). Text before the first heading becomes an "Introduction" step.
    A step with a fenced code block is an exercise in that block's language."""
    text = markdown.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    tokens = _MD.parse(text)
    headings = [(i, t) for i, t in enumerate(tokens) if t.type == "heading_open" and t.map]
    if not headings:
        return [_step("Introduction", lines, tokens)] if text.strip() else []
    levels = sorted({t.tag for _, t in headings})
    tops = [(i, t) for i, t in headings if t.tag == levels[0]]
    intro_name = "Introduction"
    if len(tops) == 1 and len(levels) > 1:
        # One top heading is the document's title (a Notion page): split at the next level.
        intro_name = tokens[tops[0][0] + 1].content.strip() or intro_name
        tops = [(i, t) for i, t in headings if t.tag == levels[1]]
    steps: list[dict[str, str]] = []
    first_line = tops[0][1].map[0] if tops[0][1].map else 0
    intro = [line for line in lines[:first_line] if not _is_title(line, intro_name)]
    if "".join(intro).strip():
        steps.append(_step(intro_name, intro, tokens[:tops[0][0]]))
    for n, (index, token) in enumerate(tops):
        assert token.map is not None
        heading_end = token.map[1]
        end_token = tops[n + 1][0] if n + 1 < len(tops) else len(tokens)
        next_line = tops[n + 1][1].map if n + 1 < len(tops) else None
        end = next_line[0] if next_line else len(lines)
        title = tokens[index + 1].content.strip() or f"Step {n + 1}"
        steps.append(_step(title, lines[heading_end:end], tokens[index:end_token]))
    return steps


def _is_title(line: str, title: str) -> bool:
    return line.lstrip().startswith("#") and line.strip("# \t") == title


def _step(name: str, body: list[str], tokens: list[Token]) -> dict[str, str]:
    fence = next((t for t in tokens if t.type == "fence"), None)
    language = fence.info.strip().split(" ")[0] if fence is not None else ""
    content = "\n".join(body).strip("\n")
    return {"name": name[:MAX_STEP_NAME], "content": content[:MAX_STEP_CONTENT],
            "language": language[:MAX_LANGUAGE],
            "type": "exercise" if fence is not None else "theory"}


def upload_steps(filename: str, content: bytes) -> list[dict[str, str]]:
    """The steps of an uploaded `.md` file or Notion-export `.zip` (each page split on its
    own, pages in order: top-level first, then by name)."""
    return [step for page in read_upload(filename, content) for step in split_markdown(page)]


def read_upload(filename: str, content: bytes) -> list[str]:
    """The Markdown pages of an uploaded `.md` file or Notion-export `.zip`. Raises TooLarge
    or Invalid (with what was wrong) for anything past a limit; nothing is kept either way."""
    if len(content) > MAX_UPLOAD:
        raise TooLarge(f"the upload is {len(content) // 1024} KiB; at most "
                       f"{MAX_UPLOAD // 1024} KiB")
    lower = filename.lower()
    if lower.endswith(".zip") or content[:4] == b"PK\x03\x04":
        return _read_zip(content)
    if lower.endswith((".md", ".markdown", ".txt")) or not lower:
        return [_decode(content, filename or "the upload")]
    raise Invalid("upload a Markdown file (.md) or a Notion export (.zip)")


def _decode(content: bytes, name: str) -> str:
    if len(content) > MAX_MARKDOWN * 4:
        raise TooLarge(f"{name} is longer than {MAX_MARKDOWN} characters")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Invalid(f"{name} is not UTF-8 text") from exc
    if len(text) > MAX_MARKDOWN:
        raise TooLarge(f"{name} is longer than {MAX_MARKDOWN} characters")
    return text


def _check_name(name: str) -> None:
    parts = name.replace("\\", "/").split("/")
    if (len(name) > MAX_ENTRY_NAME or name.startswith(("/", "\\")) or ".." in parts
            or "\x00" in name or re.match(r"^[A-Za-z]:", name)):
        raise Invalid(f"the zip holds an unsafe entry name {name[:60]!r}: refused")


def _read_zip(content: bytes) -> list[str]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
    except (zipfile.BadZipFile, ValueError) as exc:
        raise Invalid("the upload is not a readable zip file") from exc
    with archive:
        entries = archive.infolist()
        if len(entries) > MAX_ZIP_ENTRIES:
            raise TooLarge(f"the zip holds {len(entries)} entries; at most {MAX_ZIP_ENTRIES}")
        for info in entries:
            _check_name(info.filename)
        pages = sorted((info for info in entries
                        if not info.is_dir() and info.filename.lower().endswith(".md")),
                       key=lambda info: (info.filename.count("/"), info.filename))
        if not pages:
            raise Invalid("the zip holds no Markdown (.md) pages")
        budget = MAX_MARKDOWN * 4  # bytes of UTF-8 for MAX_MARKDOWN characters at most
        documents: list[str] = []
        for info in pages:
            if info.flag_bits & 0x1:
                raise Invalid(f"{info.filename[:60]!r} is encrypted")
            try:
                with archive.open(info) as entry:
                    data = entry.read(budget + 1)
            except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError) as exc:
                raise Invalid(f"cannot unpack {info.filename[:60]!r}: {exc}") from exc
            budget -= len(data)
            if budget < 0:
                raise TooLarge(f"the zip's Markdown unpacks to more than {MAX_MARKDOWN} "
                               "characters")
            documents.append(_page(info.filename, _decode(data, info.filename[:60])))
        if sum(map(len, documents)) > MAX_MARKDOWN:
            raise TooLarge(f"the zip's Markdown is longer than {MAX_MARKDOWN} characters")
        return documents


def _page(filename: str, text: str) -> str:
    """One exported page; a page without a heading of its own is titled by its file name."""
    if re.search(r"^#{1,6}\s", text, re.MULTILINE):
        return text
    title = _NOTION_ID.sub("", filename.rsplit("/", 1)[-1][:-3]).strip() or "Page"
    return f"# {title}\n\n{text}"
