"""StaticFiles: serving, ETags, and every way out of the root refused with 404."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from protocol import HTTPError, Request, Response, Router, StaticFiles
from protocol.static import safe_relative_path


def make_tree(tmp_path: Path) -> Path:
    root = tmp_path / "static"
    (root / "css").mkdir(parents=True)
    (root / "css" / "site.css").write_text("body{}")
    (root / "app.js").write_text("let x;")
    (root / "logo.SVG").write_text("<svg/>")
    (root / "data.bin").write_bytes(b"\x00\x01")
    (root / ".env").write_text("SECRET=1")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]")
    (tmp_path / "secret.txt").write_text("outside")
    (root / "inside-link.css").symlink_to(root / "css" / "site.css")
    (root / "outside-link.txt").symlink_to(tmp_path / "secret.txt")
    (root / "dir-link").symlink_to(tmp_path)
    (root / "to-dotfile.txt").symlink_to(root / ".env")
    return root


def router_for(root: Path) -> Router:
    router = Router()
    router.add("GET", "/static/{path:path}", StaticFiles(root, max_age=60))
    return router


async def get(
    router: Router, target: str, headers: tuple[tuple[str, str], ...] = (), method: str = "GET"
) -> Response:
    try:
        return await router(Request.make(method, target, headers=headers))
    except HTTPError as error:
        return Response(error.status)


async def test_serves_files_with_type_and_caching(tmp_path: Path) -> None:
    router = router_for(make_tree(tmp_path))
    response = await get(router, "/static/css/site.css")
    assert (response.status, response.body) == (200, b"body{}")
    assert response.header("content-type") == "text/css; charset=utf-8"
    assert response.header("cache-control") == "public, max-age=60"
    assert response.header("x-content-type-options") == "nosniff"
    assert (await get(router, "/static/app.js")).header("content-type") == (
        "text/javascript; charset=utf-8"
    )
    assert (await get(router, "/static/logo.SVG")).header("content-type") == "image/svg+xml"
    binary = await get(router, "/static/data.bin")
    assert binary.header("content-type") == "application/octet-stream"
    assert binary.body == b"\x00\x01"


async def test_symlink_inside_root_is_served(tmp_path: Path) -> None:
    response = await get(router_for(make_tree(tmp_path)), "/static/inside-link.css")
    assert (response.status, response.body) == (200, b"body{}")


async def test_etag_and_if_none_match(tmp_path: Path) -> None:
    router = router_for(make_tree(tmp_path))
    etag = (await get(router, "/static/app.js")).header("etag")
    assert etag is not None and etag.startswith('"')
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        response = await get(router, "/static/app.js", (("if-none-match", header),))
        assert (response.status, response.body) == (304, b"")
        assert response.header("etag") == etag
    response = await get(router, "/static/app.js", (("if-none-match", '"other"'),))
    assert response.status == 200


async def test_head_and_other_methods(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    files = StaticFiles(root)
    head = await files(Request(method="HEAD", target="/", path="/", params={"path": "app.js"}))
    assert head.status == 200
    with pytest.raises(HTTPError) as info:
        await files(Request(method="POST", target="/", path="/", params={"path": "app.js"}))
    assert info.value.status == 405


@pytest.mark.parametrize(
    "target",
    [
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/css/..%2F..%2Fsecret.txt",
        "/static/css/%2E%2E/site.css",
        "/static/./app.js",
        "/static//etc/passwd",
        "/static/%2Fetc%2Fpasswd",
        "/static/css%5C..%5C..%5Csecret.txt",
        "/static/app.js%5C",
        "/static/.env",
        "/static/.git/config",
        "/static/css/",
        "/static/css",
        "/static/missing.css",
        "/static/outside-link.txt",
        "/static/dir-link/secret.txt",
        "/static/to-dotfile.txt",
        "/static/app.js/",
    ],
)
async def test_escapes_and_non_files_are_404(tmp_path: Path, target: str) -> None:
    response = await get(router_for(make_tree(tmp_path)), target)
    assert response.status == 404


async def test_nul_in_path_never_reaches_the_filesystem(tmp_path: Path) -> None:
    files = StaticFiles(make_tree(tmp_path))
    with pytest.raises(HTTPError) as info:
        await files(Request(method="GET", target="/", path="/", params={"path": "app.js\x00.css"}))
    assert info.value.status == 404


async def test_fifo_is_404_without_blocking(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    os.mkfifo(root / "pipe.txt")
    with trio.fail_after(5):
        assert (await get(router_for(root), "/static/pipe.txt")).status == 404


def test_safe_relative_path() -> None:
    assert str(safe_relative_path("css/site.css")) == "css/site.css"
    for bad in ["", "/abs", "a/../b", "..", ".", "a//b", "a\\b", "a\x00b", ".hidden", "a/.b/c"]:
        assert safe_relative_path(bad) is None, bad


async def test_missing_path_param_is_a_programming_error(tmp_path: Path) -> None:
    files = StaticFiles(make_tree(tmp_path))
    with pytest.raises(RuntimeError):
        await files(Request(method="GET", target="/", path="/"))
