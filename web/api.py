"""The JSON API under /api/v1/: the same calls on `classroom/` as the pages, as JSON.

Every POST body must be `application/json` (415 otherwise; an empty body counts as `{}`):
a cross-site HTML form cannot send that type, which is what keeps cookie-authenticated API
calls safe from CSRF without a token. Errors leave through `errors.http_error` like the
pages' do, and `errors.error_page` shapes them as `{"error": {"code", "message"}}`.

A signed-in POST may carry an `Idempotency-Key` header: a retry with the same key (same user,
same path) gets the first successful answer again, with `Idempotent-Replayed: true`, and
changes nothing; a failed first try leaves no trace, so its retry runs afresh.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import attrs
import trio

from classroom import User
from classroom.errors import ClassroomError, Invalid
from classroom.posts import PAGE_SIZE
from classroom.rooms import DISCUSSION, HISTORY_PAGE, LIVE
from classroom.rules import Action, Role
from classroom.services import Services
from classroom.views import attendance_view, event_view, room_view
from protocol import Handler, Request, Response, Router
from protocol.addresses import address_key

from . import openapi, serialize
from .auth import Sessions, Visitor
from .inputs import json_object, json_tags, json_text, query_int
from .render import json_response, with_security

__all__ = ["API_ROOT", "Api"]

API_ROOT: Final = "/api/v1"
log = logging.getLogger("web.api")


@attrs.frozen
class Call:
    """One API request and who made it."""

    request: Request
    visitor: Visitor

    def id(self) -> int:
        return int(self.request.params["id"])

    def payload(self) -> dict[str, Any]:
        return json_object(self.request)


ApiHandler = Callable[[Call], Awaitable[Response]]


class Api:
    def __init__(self, services: Services, sessions: Sessions, *, chat_url: str | None
                 ) -> None:
        self._services = services
        self._sessions = sessions
        self._chat_url = chat_url

    def mount(self, router: Router) -> None:
        for method, pattern, handler in self.routes():
            router.add(method, API_ROOT + pattern, self._serve(handler))

    def routes(self) -> list[tuple[str, str, ApiHandler]]:
        """(method, pattern under /api/v1, handler): each is described in web/openapi.py."""
        return [
            ("GET", "/healthz", self.healthz),
            ("GET", "/openapi.json", self.openapi),
            ("POST", "/signup", self.signup),
            ("POST", "/login", self.login),
            ("POST", "/logout", self.logout),
            ("POST", "/password", self.change_password),
            ("GET", "/me", self.me),
            ("GET", "/classrooms", self.classrooms),
            ("POST", "/classrooms", self.create_classroom),
            ("POST", "/classrooms/join", self.join),
            ("GET", "/classrooms/{id:int}", self.classroom),
            ("GET", "/classrooms/{id:int}/posts", self.posts),
            ("POST", "/classrooms/{id:int}/posts", self.create_post),
            ("GET", "/classrooms/{id:int}/tags", self.tags),
            ("GET", "/posts/{id:int}", self.post),
            ("PATCH", "/posts/{id:int}", self.edit_post),
            ("DELETE", "/posts/{id:int}", self.delete_post),
            ("GET", "/posts/{id:int}/comments", self.comments),
            ("POST", "/posts/{id:int}/comments", self.add_comment),
            ("DELETE", "/comments/{id:int}", self.delete_comment),
            ("POST", "/classrooms/{id:int}/leave", self.leave),
            ("DELETE", "/classrooms/{id:int}/students/{user:int}", self.remove_student),
            ("POST", "/classrooms/{id:int}/join-code", self.join_code),
            ("POST", "/classrooms/{id:int}/archive", self.archive),
            ("GET", "/classrooms/{id:int}/students", self.students),
            ("GET", "/classrooms/{id:int}/sessions", self.sessions),
            ("POST", "/classrooms/{id:int}/sessions", self.start_session),
            ("GET", "/classrooms/{id:int}/discussions", self.discussions),
            ("POST", "/classrooms/{id:int}/discussions", self.open_discussion),
            ("GET", "/sessions/{id:int}", self.room),
            ("POST", "/sessions/{id:int}/end", self.end_room),
            ("GET", "/sessions/{id:int}/attendance", self.attendance),
            ("GET", "/rooms/{id:int}", self.room),
            ("GET", "/rooms/{id:int}/messages", self.messages),
        ]

    def _serve(self, handler: ApiHandler) -> Handler:
        async def serve(request: Request) -> Response:
            call = Call(request, await self._sessions.visitor(request))
            key = request.header("idempotency-key")
            user = call.visitor.user
            if request.method != "POST" or key is None or user is None:
                return await handler(call)
            return await self._once(call, handler, user, key.strip())

        return serve

    async def _once(self, call: Call, handler: ApiHandler, user: User, key: str) -> Response:
        replays = self._services.replays
        scope = f"POST {call.request.path}"
        first = await replays.begin(user, scope, key)
        if first is not None:
            saved = json.loads(first)
            return with_security(Response(
                saved["status"], (("Content-Type", saved["type"]),
                                  ("Idempotent-Replayed", "true")), saved["body"].encode()))
        try:
            response = await handler(call)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._abandon(user, scope, key)
            raise
        if not 200 <= response.status < 300:
            await self._abandon(user, scope, key)
            return response
        answer = {"status": response.status, "body": response.body.decode(),
                  "type": response.header("content-type") or "application/json"}
        try:
            await replays.finish(user, scope, key, json.dumps(answer))
        except ClassroomError as exc:
            # The work is done: answer it. A retry now meets 409 until the key expires.
            log.warning("Idempotency-Key of user %s not saved: %s", user.id, exc.message)
        return response

    async def _abandon(self, user: User, scope: str, key: str) -> None:
        try:
            await self._services.replays.abandon(user, scope, key)
        except ClassroomError as exc:
            log.warning("Idempotency-Key of user %s not released: %s", user.id, exc.message)

    # -- accounts ----------------------------------------------------------------------

    async def healthz(self, call: Call) -> Response:
        # chat_url: where the terminal client finds the WebSocket server (None: chat is off).
        # bus: "off" (none), "up", or "down" (servers read the database meanwhile).
        return json_response({"status": "ok", "database": await self._services.health(),
                              "chat_url": self._chat_url, "bus": self._services.bus.state})

    async def openapi(self, call: Call) -> Response:
        return json_response(openapi.document())

    async def signup(self, call: Call) -> Response:
        data = call.payload()
        client = call.request.client
        signed_in = await self._services.accounts.sign_up(
            json_text(data, "username"), json_text(data, "display_name"),
            json_text(data, "password"), address=address_key(client[0]) if client else "unknown")
        body = {"user": serialize.user(signed_in.user), "token": signed_in.token}
        return self._sessions.signed_in(json_response(body, 201), signed_in.token)

    async def login(self, call: Call) -> Response:
        data = call.payload()
        client = call.request.client
        signed_in = await self._services.accounts.log_in(
            json_text(data, "username"), json_text(data, "password"),
            address=address_key(client[0]) if client else "unknown")
        body = {"user": serialize.user(signed_in.user), "token": signed_in.token}
        return self._sessions.signed_in(json_response(body), signed_in.token)

    async def logout(self, call: Call) -> Response:
        call.payload()  # the Content-Type rule is the CSRF defence of a cookie logout
        return await self._sessions.sign_out(call.visitor, Response(204))

    async def change_password(self, call: Call) -> Response:
        """{current_password, new_password}: 204; every other sign-in of the user ends."""
        data = call.payload()
        await self._services.accounts.change_password(
            call.visitor.me, call.visitor.token, json_text(data, "current_password"),
            json_text(data, "new_password"))
        return Response(204)

    async def me(self, call: Call) -> Response:
        return json_response({"user": serialize.user(call.visitor.me)})

    # -- classes ------------------------------------------------------------------------

    async def classrooms(self, call: Call) -> Response:
        memberships = await self._services.classes.mine(call.visitor.me)
        return json_response({"classrooms": [serialize.membership(m) for m in memberships]})

    async def create_classroom(self, call: Call) -> Response:
        data = call.payload()
        classroom = await self._services.classes.create(
            call.visitor.me, json_text(data, "name"), json_text(data, "description"))
        return json_response({"classroom": serialize.classroom(classroom, Role.INSTRUCTOR)}, 201)

    async def join(self, call: Call) -> Response:
        data = call.payload()
        # The class answer names the code `join_code`; both names are taken.
        code = json_text(data, "code") or json_text(data, "join_code")
        classroom, role = await self._services.classes.join(call.visitor.me, code)
        return json_response({"classroom": serialize.classroom(classroom, role)})

    async def classroom(self, call: Call) -> Response:
        classroom, role = await self._services.classes.get(call.visitor.me, call.id())
        return json_response({"classroom": serialize.classroom(classroom, role)})

    async def students(self, call: Call) -> Response:
        members = await self._services.classes.roster(call.visitor.me, call.id())
        return json_response({"members": [serialize.member(m) for m in members]})

    # -- posts --------------------------------------------------------------------------

    async def posts(self, call: Call) -> Response:
        request, me, classroom_id = call.request, call.visitor.me, call.id()
        tag = request.query_value("tag") or None
        before = query_int(request, "before")
        await self._services.classes.authorize(me, classroom_id, Action.VIEW_CLASS)

        async def answer() -> Response:
            posts = await self._services.posts.stream(me, classroom_id, tag=tag,
                                                      before_id=before)
            more = len(posts) == PAGE_SIZE
            return json_response({"posts": [serialize.post(p) for p in posts],
                                  "next_before": posts[-1].id if more else None})

        # The same answer for every member, and a Response is immutable: built once per
        # change of the class (the cache drops it with the class).
        return await self._services.cache.class_memo(classroom_id, ("api/posts", tag, before),
                                                     answer)

    async def create_post(self, call: Call) -> Response:
        data = call.payload()
        post = await self._services.posts.create(
            call.visitor.me, call.id(), title=json_text(data, "title"),
            body=json_text(data, "body"), tags=json_tags(data))
        return json_response({"post": serialize.post(post)}, 201)

    async def post(self, call: Call) -> Response:
        post, _ = await self._services.posts.get(call.visitor.me, call.id())
        return json_response({"post": serialize.post(post)})

    async def edit_post(self, call: Call) -> Response:
        data = call.payload()
        post = await self._services.posts.edit(
            call.visitor.me, call.id(), title=json_text(data, "title"),
            body=json_text(data, "body"), tags=json_tags(data))
        return json_response({"post": serialize.post(post)})

    async def delete_post(self, call: Call) -> Response:
        await self._services.posts.delete(call.visitor.me, call.id())
        return Response(204)

    async def comments(self, call: Call) -> Response:
        post, _ = await self._services.posts.get(call.visitor.me, call.id())
        by_post = await self._services.posts.comments(call.visitor.me, post.classroom_id,
                                                      [post.id])
        return json_response({"comments": [serialize.comment(c) for c in by_post[post.id]]})

    async def add_comment(self, call: Call) -> Response:
        data = call.payload()
        private = data.get("private", False)
        student_id = data.get("student_id")
        if not isinstance(private, bool):
            raise Invalid("private must be true or false")
        if student_id is not None and (not isinstance(student_id, int)
                                       or isinstance(student_id, bool)):
            raise Invalid("student_id must be a user id")
        comment = await self._services.posts.comment(
            call.visitor.me, call.id(), data.get("body", ""), private=private,
            student_id=student_id)
        return json_response({"comment": serialize.comment(comment)}, 201)

    async def delete_comment(self, call: Call) -> Response:
        await self._services.posts.delete_comment(call.visitor.me, call.id())
        return Response(204)

    async def leave(self, call: Call) -> Response:
        call.payload()  # the Content-Type rule is the CSRF defence of a cookie call
        await self._services.classes.leave(call.visitor.me, call.id())
        return Response(204)

    async def remove_student(self, call: Call) -> Response:
        await self._services.classes.remove_student(
            call.visitor.me, call.id(), int(call.request.params["user"]))
        return Response(204)

    async def join_code(self, call: Call) -> Response:
        """`{"reset": true}` draws a new code; `{"open": false}` turns joining off."""
        data = call.payload()
        classes = self._services.classes
        me = call.visitor.me
        reset, open_ = data.get("reset", False), data.get("open")
        if not isinstance(reset, bool) or (open_ is not None and not isinstance(open_, bool)):
            raise Invalid("reset and open must be true or false")
        if not reset and open_ is None:
            raise Invalid("send reset: true or open: true|false")
        classroom = None
        if reset:
            classroom = await classes.reset_join_code(me, call.id())
        if open_ is not None:
            classroom = await classes.set_joining(me, call.id(), open_)
        assert classroom is not None
        return json_response({"classroom": serialize.classroom(classroom, Role.INSTRUCTOR)})

    async def archive(self, call: Call) -> Response:
        """`{"archived": true}` archives the class, `false` restores it."""
        data = call.payload()
        archived = data.get("archived", True)
        if not isinstance(archived, bool):
            raise Invalid("archived must be true or false")
        classroom = await self._services.classes.set_archived(call.visitor.me, call.id(),
                                                              archived)
        return json_response({"classroom": serialize.classroom(classroom, Role.INSTRUCTOR)})

    async def tags(self, call: Call) -> Response:
        tags = await self._services.posts.tags(call.visitor.me, call.id())
        return json_response({"tags": [serialize.tag_count(t) for t in tags]})

    # -- rooms: live sessions and discussions ---------------------------------------------
    # A live session is a room of kind "live": /sessions/{id} and /rooms/{id} are one room.

    async def sessions(self, call: Call) -> Response:
        rooms = await self._services.rooms.in_class(call.visitor.me, call.id(), LIVE)
        return json_response({"sessions": [room_view(r) for r in rooms]})

    async def start_session(self, call: Call) -> Response:
        data = call.payload()
        room = await self._services.rooms.open(call.visitor.me, call.id(), LIVE,
                                               json_text(data, "topic"))
        return json_response({"room": room_view(room)}, 201)

    async def discussions(self, call: Call) -> Response:
        rooms = await self._services.rooms.in_class(call.visitor.me, call.id(), DISCUSSION)
        return json_response({"discussions": [room_view(r) for r in rooms]})

    async def open_discussion(self, call: Call) -> Response:
        data = call.payload()
        room = await self._services.rooms.open(call.visitor.me, call.id(), DISCUSSION,
                                               json_text(data, "topic"))
        return json_response({"room": room_view(room)}, 201)

    async def room(self, call: Call) -> Response:
        access = await self._services.rooms.access(call.visitor.me, call.id())
        return json_response({"room": room_view(access.room)})

    async def end_room(self, call: Call) -> Response:
        call.payload()  # the Content-Type rule is the CSRF defence of a cookie call
        room = await self._services.rooms.end(call.visitor.me, call.id())
        return json_response({"room": room_view(room)})

    async def attendance(self, call: Call) -> Response:
        room, records = await self._services.rooms.attendance(call.visitor.me, call.id())
        now = self._services.clock()
        return json_response({"room": room_view(room),
                              "attendance": [attendance_view(r, now) for r in records]})

    async def messages(self, call: Call) -> Response:
        """The room's stored events the caller may see (public ones and their own private
        ones), oldest first, after seq `after`; `next_after` continues when a page is full."""
        request = call.request
        after = query_int(request, "after") or 0
        limit = query_int(request, "limit") or HISTORY_PAGE
        limit = min(max(limit, 1), HISTORY_PAGE)
        events = await self._services.rooms.history(call.visitor.me, call.id(), after=after,
                                                    limit=limit)
        return json_response({"messages": [event_view(e) for e in events],
                              "next_after": events[-1].seq if len(events) == limit else None})
