"""Serving files from one folder, and nothing outside it.

The requested name is checked twice: first as text (no "..", no absolute paths, no
backslashes, NUL or dotfiles), then after resolving symlinks (the real file must still lie
strictly under the root, and be a regular file). Every refusal is a plain 404, so probing
learns nothing. The root is assumed not writable by attackers, so a symlink swapped between
the check and the read is not defended against.
"""

from __future__ import annotations

import pathlib
import stat
from typing import Final

import trio

from .errors import HTTPError
from .messages import Request, Response

__all__ = ["StaticFiles", "content_type_for", "etag_matches", "safe_relative_path"]

# Our own table rather than `mimetypes`, which reads /etc/mime.types and so differs by host.
CONTENT_TYPES: Final = {
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".ico": "image/x-icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
}
DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"


def content_type_for(name: str) -> str:
    """The Content-Type for a file name, by its suffix (case-insensitive)."""
    return CONTENT_TYPES.get(pathlib.PurePosixPath(name).suffix.lower(), DEFAULT_CONTENT_TYPE)


def safe_relative_path(name: str) -> pathlib.PurePosixPath | None:
    """`name` as a relative path if it is plainly inside its folder, else None.

    Refused: empty, absolute, backslash (a separator elsewhere), NUL or other controls, empty
    segments ("a//b"), and any segment starting with "." (".", "..", dotfiles, ".git/").
    """
    if not name or name.startswith("/") or "\\" in name:
        return None
    if any(ord(char) < 0x20 or char == "\x7f" for char in name):
        return None
    segments = name.split("/")
    if any(not segment or segment.startswith(".") for segment in segments):
        return None
    return pathlib.PurePosixPath(*segments)


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """True if an If-None-Match header names `etag` (weak comparison, "*" matches all)."""
    if if_none_match is None:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip().removeprefix("W/")
        if candidate in ("*", etag):
            return True
    return False


class StaticFiles:
    """A Handler serving `request.params["path"]` from the files under `root`.

    Mount it on a GET route ending in `{path:path}`. Answers 404 for anything but a regular
    file strictly under `root` (see `safe_relative_path`; symlinks are followed but must end
    under `root` too), 405 for methods other than GET and HEAD, 304 when If-None-Match holds
    the file's ETag. Files are read whole: the folder holds our own small assets.
    Raises OSError at construction if `root` does not exist.
    """

    def __init__(self, root: pathlib.Path, *, max_age: int = 3600) -> None:
        if max_age < 0:
            raise ValueError("max_age must be >= 0")
        # Resolved once, at start-up, so every check compares real paths with a real path.
        self._root = root.resolve(strict=True)
        self._max_age = max_age

    async def __call__(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            raise HTTPError(405, headers=[("Allow", "GET, HEAD")])
        name = request.params.get("path")
        if name is None:
            raise RuntimeError("StaticFiles must be routed with a {path:path} parameter")
        relative = safe_relative_path(name)
        if relative is None:
            raise HTTPError(404)
        try:
            real = await trio.Path(self._root, relative).resolve(strict=True)
            info = await real.stat()
        except OSError:
            raise HTTPError(404) from None
        if not real.is_relative_to(self._root):
            raise HTTPError(404)
        # A symlink inside the root may still point at a dotfile (".env") inside it.
        parts = real.relative_to(self._root).parts
        if not parts or any(part.startswith(".") for part in parts):
            raise HTTPError(404)
        if not stat.S_ISREG(info.st_mode):
            raise HTTPError(404)
        etag = f'"{info.st_mtime_ns:x}-{info.st_size:x}"'
        headers = (
            ("Content-Type", content_type_for(real.name)),
            ("ETag", etag),
            ("Cache-Control", f"public, max-age={self._max_age}"),
            ("X-Content-Type-Options", "nosniff"),
        )
        if etag_matches(request.header("if-none-match"), etag):
            return Response(304, headers)
        try:
            body = await real.read_bytes()
        except OSError:
            raise HTTPError(404) from None
        return Response(200, headers, body)
