"""Router: patterns, converters, 404/405, HEAD."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from protocol import HTTPError, Request, Response, Router
from protocol.router import compile_pattern


def request(method: str, target: str) -> Request:
    return Request.make(method, target)


def echo(name: str):  # type: ignore[no-untyped-def]
    async def handler(request: Request) -> Response:
        return Response.json({"handler": name, "params": dict(request.params)})

    return handler


def make_router() -> Router:
    router = Router()
    router.add("GET", "/", echo("home"))
    router.add("GET", "/classrooms/{id:int}/posts", echo("posts"))
    router.add("POST", "/classrooms/{id:int}/posts", echo("new-post"))
    router.add("GET", "/classrooms/new", echo("new"))
    router.add("GET", "/rooms/{name}", echo("room"))
    router.add("GET", "/static/{path:path}", echo("static"))
    router.add("DELETE", "/rooms/{name}", echo("delete-room"))
    return router


def params(router: Router, method: str, target: str) -> Mapping[str, str]:
    return router.resolve(request(method, target))[1]


def status(router: Router, method: str, target: str) -> int:
    with pytest.raises(HTTPError) as info:
        router.resolve(request(method, target))
    return info.value.status


async def test_dispatches_with_params() -> None:
    router = make_router()
    response = await router(request("GET", "/classrooms/42/posts"))
    assert response.body == b'{"handler":"posts","params":{"id":"42"}}'
    response = await router(request("POST", "/classrooms/7/posts"))
    assert response.body == b'{"handler":"new-post","params":{"id":"7"}}'


def test_params() -> None:
    router = make_router()
    assert params(router, "GET", "/rooms/a%20b") == {"name": "a b"}
    assert params(router, "GET", "/static/css/site.css") == {"path": "css/site.css"}
    assert params(router, "GET", "/") == {}
    assert params(router, "GET", "/classrooms/new") == {}


@pytest.mark.parametrize(
    "target",
    [
        "/classrooms/abc/posts",
        "/classrooms/-1/posts",
        "/classrooms/007/posts",
        "/classrooms/1234567890123456789/posts",
        "/classrooms/%C2%B2/posts",  # a unicode digit
        "/classrooms//posts",
        "/rooms/",
        "/rooms/a/b",
        "/static/",
        "/nowhere",
    ],
)
def test_not_found(target: str) -> None:
    assert status(make_router(), "GET", target) == 404


def test_trailing_slash_is_a_different_path() -> None:
    router = make_router()
    assert status(router, "GET", "/classrooms/1/posts/") == 404
    assert status(router, "GET", "/classrooms/new/") == 404


def test_method_not_allowed_lists_allowed_methods() -> None:
    router = make_router()
    with pytest.raises(HTTPError) as info:
        router.resolve(request("PUT", "/rooms/x"))
    assert info.value.status == 405
    assert info.value.headers == (("Allow", "DELETE, GET, HEAD"),)
    with pytest.raises(HTTPError) as info:
        router.resolve(request("PATCH", "/classrooms/1/posts"))
    assert info.value.headers == (("Allow", "GET, HEAD, POST"),)


def test_head_is_answered_by_get_routes_only() -> None:
    router = Router()
    router.add("POST", "/form", echo("form"))
    router.add("GET", "/page", echo("page"))
    assert params(router, "HEAD", "/page") == {}
    with pytest.raises(HTTPError) as info:
        router.resolve(request("HEAD", "/form"))
    assert (info.value.status, info.value.headers) == (405, (("Allow", "POST"),))


async def test_explicit_head_route_wins_over_get() -> None:
    router = Router()
    router.add("GET", "/x", echo("get"))
    router.add("HEAD", "/x", echo("head"))
    response = await router(request("HEAD", "/x"))
    assert b'"head"' in response.body


async def test_first_added_route_wins() -> None:
    router = Router()
    router.add("GET", "/rooms/{name}", echo("param"))
    router.add("GET", "/rooms/special", echo("literal"))
    assert b'"param"' in (await router(request("GET", "/rooms/special"))).body


async def test_route_decorator() -> None:
    router = Router()

    @router.route("get", "/hello/{who}")
    async def hello(request: Request) -> Response:
        return Response.text(f"hello {request.params['who']}")

    assert (await router(request("GET", "/hello/you"))).body == b"hello you"


@pytest.mark.parametrize(
    "pattern",
    [
        "no-slash",
        "/a/{id:float}",
        "/a/{id}{other}",
        "/a/x{id}",
        "/a/{path:path}/b",
        "/a/{x}/{x}",
        "/a/{1bad}",
    ],
)
def test_bad_patterns(pattern: str) -> None:
    with pytest.raises(ValueError):
        Router().add("GET", pattern, echo("x"))


def test_duplicate_route_and_bad_method() -> None:
    router = Router()
    router.add("GET", "/x", echo("x"))
    with pytest.raises(ValueError):
        router.add("get", "/x", echo("x"))
    with pytest.raises(ValueError):
        router.add("G ET", "/y", echo("y"))


def scan(routes: list[tuple[str, str]], method: str, path: str) -> object:
    """What the router must answer, found by trying every pattern in the order added."""
    allowed: set[str] = set()
    fallback = None
    for index, (route_method, pattern) in enumerate(routes):
        match = compile_pattern(pattern).fullmatch(path)
        if match is None:
            continue
        if route_method == method:
            return index, match.groupdict()
        if method == "HEAD" and route_method == "GET" and fallback is None:
            fallback = index, match.groupdict()
        allowed.add(route_method)
    if fallback is not None:
        return fallback
    if not allowed:
        return 404
    return 405, sorted(allowed | ({"HEAD"} if "GET" in allowed else set()))


def test_the_route_index_answers_as_a_scan_of_every_pattern_would() -> None:
    routes = [
        ("GET", "/"), ("GET", "/a"), ("POST", "/a"), ("GET", "/a/"), ("GET", "/a/{x}"),
        ("DELETE", "/a/{x:int}"), ("GET", "/a/new"), ("GET", "/a/{x}/b"),
        ("PUT", "/a/{x:int}/b"), ("GET", "/a/{rest:path}"), ("POST", "/{any}/b"),
        ("GET", "/{all:path}"), ("GET", "/s/{p:path}"), ("GET", "/s/x/{y}"), ("GET", "//x"),
        ("PATCH", "/{a}/{b}/{c}"),
    ]
    router = Router()
    handlers = {}
    for index, (method, pattern) in enumerate(routes):
        handler = handlers[index] = echo(str(index))
        router.add(method, pattern, handler)
    index_of = {handler: index for index, handler in handlers.items()}
    paths = ["/", "//", "///", "/a", "/a/", "/a//", "/a/1", "/a/01", "/a/x", "/a/new",
             "/a/1/b", "/a/x/b", "/a/x/b/", "/a/x/y/z", "/b", "/x/b", "/x/y/b", "/s", "/s/",
             "/s/x", "/s/x/y", "/s/x/y/z", "//x", "/x/y/z", "/a/\n", "/a/\n/b", "/\n", "", "*",
             "a/b"]
    for path in paths:  # as a Request carries them: decoded, unchecked
        for method in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"):
            expected = scan(routes, method, path)
            try:
                handler, found = router.resolve(Request(method, path, path))
            except HTTPError as error:
                allow = dict(error.headers).get("Allow")
                got: object = error.status if allow is None else (
                    error.status, allow.split(", "))
            else:
                got = index_of[handler], dict(found)
            assert got == expected, (method, path)
