"""The JSON API described for newcomers as an OpenAPI 3.1 document, served at
/api/v1/openapi.json. Written by hand here, one entry per route; tests/web/test_openapi.py
checks it against the router both ways (every route documented, every documented route
answering), so the two cannot drift apart."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = ["OPERATIONS", "document"]

JSON = dict[str, Any]
# (type, description) of each body field; a trailing "!" on the name: required.
Fields = Mapping[str, tuple[str, str]]

_TEXT: Final = "string"
_TAGS: Final = "tags"  # a list of strings, or one comma/space-separated string


class Op:
    def __init__(self, summary: str, body: Fields | None = None,
                 query: Mapping[str, str] | None = None, *, public: bool = False,
                 status: int = 200) -> None:
        self.summary = summary
        self.body = body
        self.query = query or {}
        self.public = public
        self.status = status


# (method, path under /api/v1) -> what it does. Paths use {id}-style parameters.
OPERATIONS: Final[dict[tuple[str, str], Op]] = {
    ("GET", "/healthz"): Op("Is the server up; its database backend and where the chat "
                            "server is (chat_url)", public=True),
    ("GET", "/openapi.json"): Op("This document", public=True),
    ("POST", "/signup"): Op("Create an account and sign in: the answer has the user and a "
                            "Bearer token", {
                                "username!": (_TEXT, "3-32 characters: a-z, digits, . _ -"),
                                "display_name!": (_TEXT, "how others see you, e.g. Ada L"),
                                "password!": (_TEXT, "at least 8 characters")},
                            public=True, status=201),
    ("POST", "/login"): Op("Sign in: the user and a Bearer token", {
        "username!": (_TEXT, "your username"), "password!": (_TEXT, "your password")},
        public=True),
    ("POST", "/logout"): Op("End this sign-in (an empty JSON body)", {}, status=204),
    ("POST", "/password"): Op("Change your password; your other sign-ins end", {
        "current_password!": (_TEXT, "the password now"),
        "new_password!": (_TEXT, "at least 8 characters")}),
    ("GET", "/me"): Op("Who you are"),
    ("GET", "/classrooms"): Op("Your classes, with your role in each"),
    ("POST", "/classrooms"): Op("Create a class (you are its instructor; the answer has its "
                                "join_code)", {
                                    "name!": (_TEXT, "the class's name"),
                                    "description": (_TEXT, "what it is about")},
                                status=201),
    ("POST", "/classrooms/join"): Op("Join a class as a student", {
        "code!": (_TEXT, "the class code, any case, spaces allowed; `join_code` is "
                         "accepted too")}),
    ("GET", "/classrooms/{id}"): Op("One class"),
    ("GET", "/classrooms/{id}/posts"): Op(
        "The class's posts, newest first (50 a page; next_before continues)",
        query={"tag": "only posts with this tag", "before": "posts older than this id"}),
    ("POST", "/classrooms/{id}/posts"): Op("Post to the class (instructor)", {
        "title": (_TEXT, "up to 200 characters"), "body": (_TEXT, "the text"),
        "tags": (_TAGS, "tags: a list, or one comma-separated string")}, status=201),
    ("GET", "/classrooms/{id}/tags"): Op("The class's tags with their post counts"),
    ("GET", "/posts/{id}"): Op("One post (edited_at: when it was last edited)"),
    ("PATCH", "/posts/{id}"): Op("Edit a post (instructor): replaces title, text and tags", {
        "title": (_TEXT, "the new title"), "body": (_TEXT, "the new text"),
        "tags": (_TAGS, "the new tags")}),
    ("DELETE", "/posts/{id}"): Op("Delete a post and its comments (instructor)", status=204),
    ("GET", "/posts/{id}/comments"): Op(
        "Comments you may see: class comments, and private threads (a student: their own; "
        "the instructor: every student's)"),
    ("POST", "/posts/{id}/comments"): Op("Comment on a post", {
        "body!": (_TEXT, "the comment"),
        "private": ("boolean", "in a private thread with the instructor"),
        "student_id": ("integer", "the instructor's reply: whose private thread")},
        status=201),
    ("DELETE", "/comments/{id}"): Op("Delete a comment (the instructor: any; others: their "
                                     "own)", status=204),
    ("POST", "/classrooms/{id}/leave"): Op("Leave the class (a student)", {}, status=204),
    ("DELETE", "/classrooms/{id}/students/{user}"): Op("Remove a student (instructor)",
                                                       status=204),
    ("POST", "/classrooms/{id}/join-code"): Op("A new join code, or joining on/off "
                                               "(instructor)", {
        "reset": ("boolean", "draw a new code (the old one stops working)"),
        "open": ("boolean", "whether the code lets anyone join")}),
    ("POST", "/classrooms/{id}/archive"): Op("Archive (read-only) or restore the class "
                                             "(instructor)", {
        "archived": ("boolean", "true archives, false restores")}),
    ("GET", "/classrooms/{id}/students"): Op("The roster (instructor)"),
    ("GET", "/classrooms/{id}/sessions"): Op("The class's live sessions, newest first"),
    ("POST", "/classrooms/{id}/sessions"): Op("Start a live session (instructor)", {
        "topic": (_TEXT, "optional")}, status=201),
    ("GET", "/classrooms/{id}/discussions"): Op("The class's discussions"),
    ("POST", "/classrooms/{id}/discussions"): Op("Open a discussion (instructor)", {
        "topic!": (_TEXT, "what it is about")}, status=201),
    ("GET", "/sessions/{id}"): Op("One live session (a room)"),
    ("POST", "/sessions/{id}/end"): Op("End a live session or discussion (instructor)", {}),
    ("GET", "/sessions/{id}/attendance"): Op("Who came, first join, last leave, time "
                                             "connected (instructor)"),
    ("GET", "/rooms/{id}"): Op("One room (a live session or a discussion)"),
    ("GET", "/rooms/{id}/messages"): Op(
        "The room's stored events you may see, oldest first (next_after continues)",
        query={"after": "events after this seq", "limit": "at most this many (500)"}),
}


def _schema(kind: str) -> JSON:
    if kind == _TAGS:
        return {"oneOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]}
    return {"type": kind}


def _operation(method: str, path: str, op: Op) -> JSON:
    described: JSON = {"summary": op.summary,
                       "responses": {str(op.status): {"description": "done"},
                                     "default": {"description": "an error: "
                                                 '{"error": {"code", "message"}}'}}}
    parameters = [{"name": name, "in": "path", "required": True,
                   "schema": {"type": "integer"}}
                  for name in (part[1:-1] for part in path.split("/") if part.startswith("{"))]
    parameters += [{"name": name, "in": "query", "required": False,
                    "schema": {"type": "string"}, "description": text}
                   for name, text in op.query.items()]
    if parameters:
        described["parameters"] = parameters
    if op.body is not None:
        properties = {name.rstrip("!"): {**_schema(kind), "description": text}
                      for name, (kind, text) in op.body.items()}
        required = [name.rstrip("!") for name in op.body if name.endswith("!")]
        schema: JSON = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        described["requestBody"] = {"required": True,
                                    "content": {"application/json": {"schema": schema}}}
    if op.public:
        described["security"] = []
    return described


def document() -> JSON:
    paths: dict[str, JSON] = {}
    for (method, path), op in OPERATIONS.items():
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, op)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Classroom JSON API", "version": "1",
                 "description": "Bodies are JSON (Content-Type: application/json). Sign in "
                                "with POST /login, then send Authorization: Bearer TOKEN "
                                "(or the session cookie plus a JSON body). Errors are "
                                '{"error": {"code": "not_found", "message": "..."}}.'},
        "servers": [{"url": "/api/v1"}],
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "cookie": {"type": "apiKey", "in": "cookie", "name": "classroom_session"}}},
        "security": [{"bearer": []}, {"cookie": []}],
        "paths": paths,
    }
