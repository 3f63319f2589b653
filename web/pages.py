"""The HTML pages: each handler turns one visit into calls on `classroom/` and a page.

Every POST answers with a 303 to a page (post/redirect/get), so reloading never resubmits;
a form the domain refuses is shown again with the message, the status the error carries
(400, 404, 409, 429...) and the fields the user typed, passwords excepted. Domain errors not
about the form (not a member, not allowed, database down) propagate to the error page.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs
from markupsafe import Markup

from classroom.errors import (
    ClassroomError,
    Conflict,
    Invalid,
    NotFound,
    Throttled,
    TooLarge,
    Unauthenticated,
)
from classroom.posts import PAGE_SIZE
from classroom.rules import Action, Role, check, may, may_delete_comment
from classroom.services import Services
from protocol import Handler, Request, Response, Router
from protocol.addresses import address_key

from .auth import (
    CSRF_FIELD,
    Sessions,
    Visitor,
    check_csrf,
    csrf_cookie,
    form_token,
    login_redirect,
    new_csrf_token,
    safe_next,
)
from .errors import back_path, error_hint, http_error, with_error_headers
from .inputs import query_int
from .render import SlottedPage, html_page, page, post_tail_marker, render, slot, user_badge

if TYPE_CHECKING:  # web/ calls classroom/, never storage/; the record types are only names
    from classroom import Comment, User

__all__ = ["FORM_ERRORS", "PageGroup", "PageRoute", "Pages", "Visit"]

HOME: Final = "/classrooms"
# Where a shared rendering takes the visitor's CSRF token (URL-safe base64, auth.py: nothing
# that needs escaping) and the header's "signed in as" (render.py user_badge).
_CSRF_SLOT: Final = slot("csrf")
_WHO_SLOT: Final = slot("who")
# Stands for the signed-in visitor in a page shared by many: true (the signed-in menu shows)
# but with no attributes, so a template that reads `me.anything` there fails loudly instead
# of baking the first visitor's name into everyone's page.
_SLOTTED_USER: Final = object()
# Errors that mean "fix what you typed" on a form; anything else is a page of its own.
FORM_ERRORS: Final = (Invalid, Conflict, TooLarge, Throttled, Unauthenticated)


@attrs.frozen
class Visit:
    """One page request as a handler sees it: who, the CSRF token its forms must carry, and
    the submitted form (already CSRF-checked; empty for GET)."""

    request: Request
    visitor: Visitor
    csrf: str
    form: Mapping[str, str]

    @property
    def user(self) -> User | None:
        return self.visitor.user

    @property
    def me(self) -> User:
        return self.visitor.me

    def field(self, name: str) -> str:
        return self.form.get(name, "")


PageHandler = Callable[[Visit], Awaitable[Response]]


# (method, pattern, handler, open to visitors who are not signed in)
PageRoute = tuple[str, str, PageHandler, bool]


class PageGroup:
    """What every group of pages shares: the visit (CSRF, visitor, login redirect), the page
    context every template gets, form errors and a class's tab bar."""

    def __init__(self, services: Services, sessions: Sessions, *, chat_url: str | None) -> None:
        self._services = services
        self._sessions = sessions
        self._chat_url = chat_url

    def routes(self) -> list[PageRoute]:
        raise NotImplementedError

    def mount(self, router: Router) -> None:
        for method, pattern, handler, public in self.routes():
            router.add(method, pattern, self._serve(handler, public=public))

    def not_found(self) -> Handler:
        """The page for an address no route knows, with the signed-in visitor's menu (the
        router's own 404 page knows nobody)."""

        async def missing(visit: Visit) -> Response:
            raise NotFound("there is no page at this address")

        return self._serve(missing, public=True)

    def _serve(self, handler: PageHandler, *, public: bool) -> Handler:
        """The steps every page shares: CSRF on POST, the visitor, the login redirect for
        pages that need a user, and the CSRF cookie for a browser that has none yet."""

        async def serve(request: Request) -> Response:
            form: Mapping[str, str] = {}
            if request.method == "POST":
                # An empty POST has no Content-Type to check; it fails the CSRF check instead.
                form = request.form() if request.body else {}
                check_csrf(request, form)
            cookies = request.cookies
            existing = csrf_cookie(request, cookies)
            csrf = existing or new_csrf_token()
            visitor = await self._sessions.visitor(request, cookies)
            visit = Visit(request, visitor, form_token(csrf, cookies), form)
            if visitor.user is None and not public:
                response = login_redirect(request)
            else:
                try:
                    response = await handler(visit)
                except ClassroomError as error:
                    # Refused or missing: the error page keeps the signed-in menu.
                    failure = http_error(error)
                    response = with_error_headers(
                        self._page(visit, "error.html", failure.status, error=failure,
                                   hint=error_hint(failure.status),
                                   back=back_path(request.path, failure.status)),
                        failure)
            if existing is None:
                response = self._sessions.with_csrf_cookie(response, csrf)
            return response

        return serve

    def _page(self, visit: Visit, template: str, status: int = 200, **context: Any
              ) -> Response:
        return page(template, status, me=visit.user, csrf=visit.csrf, csrf_field=CSRF_FIELD,
                    chat_url=self._chat_url, path=visit.request.path, **context)

    def _form_error(self, visit: Visit, template: str, error: ClassroomError, **context: Any
                    ) -> Response:
        failure = http_error(error)
        response = self._page(visit, template, failure.status, error=failure.message,
                              **context)
        return with_error_headers(response, failure)

    async def _tabs(self, classroom_id: int, role: Role, active: str,
                    live_now: bool | None = None) -> list[dict[str, Any]]:
        """A class's tab bar; the Live tab says "Live now" while a session runs
        (`live_now`, when the caller knows already)."""
        if live_now is None:
            live_now = await self._services.rooms.shown_session(classroom_id) is not None
        base = f"/classrooms/{classroom_id}"
        tabs: list[dict[str, Any]] = [{"key": "stream", "label": "Stream", "href": base}]
        if may(role, Action.VIEW_ROSTER):
            tabs.append({"key": "students", "label": "People", "href": f"{base}/students"})
        tabs += [{"key": "sessions", "label": "Sessions", "href": f"{base}/sessions"},
                 {"key": "live", "label": "Live", "href": f"{base}/live", "live": live_now},
                 {"key": "discussions", "label": "Discussions", "href": f"{base}/discussions"}]
        return [{**tab, "active": tab["key"] == active} for tab in tabs]


class Pages(PageGroup):
    """Signing up, in and out; one's classes; a class's stream and people."""

    def routes(self) -> list[PageRoute]:
        return [
            ("GET", "/", self.landing, True),
            ("GET", "/signup", self.signup_form, True),
            ("POST", "/signup", self.signup, True),
            ("GET", "/login", self.login_form, True),
            ("POST", "/login", self.login, True),
            ("GET", "/logout", self.logout_form, True),
            ("POST", "/logout", self.logout, True),
            ("GET", "/password", self.password_form, False),
            ("POST", "/password", self.change_password, False),
            ("GET", "/classrooms", self.my_classes, False),
            ("GET", "/classrooms/new", self.new_class_form, False),
            ("POST", "/classrooms/new", self.new_class, False),
            ("GET", "/classrooms/join", self.join_form, False),
            ("POST", "/classrooms/join", self.join, False),
            ("GET", "/classrooms/{id:int}", self.stream, False),
            ("POST", "/classrooms/{id:int}", self.new_post, False),
            ("GET", "/classrooms/{id:int}/students", self.students, False),
            ("GET", "/posts/{id:int}/edit", self.edit_post_form, False),
            ("POST", "/posts/{id:int}/edit", self.edit_post, False),
            ("POST", "/posts/{id:int}/delete", self.delete_post, False),
            ("POST", "/posts/{id:int}/comments", self.add_comment, False),
            ("POST", "/comments/{id:int}/delete", self.delete_comment, False),
            ("POST", "/classrooms/{id:int}/students/{user:int}/remove", self.remove_student,
             False),
            ("POST", "/classrooms/{id:int}/leave", self.leave, False),
            ("POST", "/classrooms/{id:int}/join-code", self.join_code, False),
            ("POST", "/classrooms/{id:int}/archive", self.archive, False),
        ]

    # -- signing in and out -------------------------------------------------------------

    async def landing(self, visit: Visit) -> Response:
        if visit.user is not None:
            return Response.redirect(HOME)
        return self._page(visit, "landing.html")

    async def signup_form(self, visit: Visit) -> Response:
        return self._signed_out_form(visit, "signup.html")

    def _signed_out_form(self, visit: Visit, template: str) -> Response:
        """Sign-up and login forms; someone already signed in goes on to `next`."""
        next_path = safe_next(visit.request.query_value("next"), HOME)
        if visit.user is not None:
            return Response.redirect(next_path)
        return self._page(visit, template, values={}, next=next_path)

    async def signup(self, visit: Visit) -> Response:
        next_path = safe_next(visit.field("next"), HOME)
        try:
            client = visit.request.client
            signed_in = await self._services.accounts.sign_up(
                visit.field("username"), visit.field("display_name"),
                visit.field("password"), visit.field("confirm"),
                address=address_key(client[0]) if client else "unknown")
        except FORM_ERRORS as error:
            values = {"username": visit.field("username"),
                      "display_name": visit.field("display_name")}
            return self._form_error(visit, "signup.html", error, values=values, next=next_path)
        return await self._switch_session(visit, signed_in.token, next_path)

    async def login_form(self, visit: Visit) -> Response:
        return self._signed_out_form(visit, "login.html")

    async def login(self, visit: Visit) -> Response:
        next_path = safe_next(visit.field("next"), HOME)
        client = visit.request.client
        try:
            signed_in = await self._services.accounts.log_in(
                visit.field("username"), visit.field("password"),
                address=address_key(client[0]) if client else "unknown")
        except FORM_ERRORS as error:
            values = {"username": visit.field("username")}
            return self._form_error(visit, "login.html", error, values=values, next=next_path)
        return await self._switch_session(visit, signed_in.token, next_path)

    async def _switch_session(self, visit: Visit, token: str, next_path: str) -> Response:
        # A browser signing in as someone else drops the old session, not just its cookie.
        if visit.visitor.token is not None:
            await self._services.accounts.log_out(visit.visitor.token)
        return self._sessions.signed_in(Response.redirect(next_path), token)

    async def logout_form(self, visit: Visit) -> Response:
        if visit.user is None:
            return Response.redirect("/")
        return self._page(visit, "logout.html")

    async def logout(self, visit: Visit) -> Response:
        return await self._sessions.sign_out(visit.visitor, Response.redirect("/"))

    async def password_form(self, visit: Visit) -> Response:
        return self._page(visit, "password.html", values={})

    async def change_password(self, visit: Visit) -> Response:
        try:
            await self._services.accounts.change_password(
                visit.me, visit.visitor.token, visit.field("current_password"),
                visit.field("new_password"), visit.field("confirm"))
        except FORM_ERRORS as error:
            return self._form_error(visit, "password.html", error, values={})
        return self._page(visit, "password.html", values={}, changed=True)

    # -- classes --------------------------------------------------------------------------

    async def my_classes(self, visit: Visit) -> Response:
        memberships = await self._services.classes.mine(visit.me)
        live = await self._services.rooms.live_now([m.classroom.id for m in memberships
                                                    if not m.classroom.archived])
        return self._page(visit, "classes.html", live=live,
                          memberships=[m for m in memberships if not m.classroom.archived],
                          archived=[m for m in memberships if m.classroom.archived])

    async def new_class_form(self, visit: Visit) -> Response:
        return self._page(visit, "new_class.html", values={})

    async def new_class(self, visit: Visit) -> Response:
        try:
            classroom = await self._services.classes.create(
                visit.me, visit.field("name"), visit.field("description"))
        except FORM_ERRORS as error:
            values = {"name": visit.field("name"), "description": visit.field("description")}
            return self._form_error(visit, "new_class.html", error, values=values)
        return Response.redirect(f"/classrooms/{classroom.id}")

    async def join_form(self, visit: Visit) -> Response:
        # A shared link /classrooms/join?code=... fills the field; joining still takes a click.
        code = visit.request.query_value("code") or ""
        return self._page(visit, "join_class.html", values={"code": code})

    async def join(self, visit: Visit) -> Response:
        try:
            classroom, _role = await self._services.classes.join(visit.me, visit.field("code"))
        except (*FORM_ERRORS, NotFound) as error:
            values = {"code": visit.field("code")}
            return self._form_error(visit, "join_class.html", error, values=values)
        return Response.redirect(f"/classrooms/{classroom.id}")

    # -- one class ----------------------------------------------------------------------

    async def stream(self, visit: Visit) -> Response:
        return await self._stream_page(visit)

    async def new_post(self, visit: Visit) -> Response:
        classroom_id = int(visit.request.params["id"])
        try:
            await self._services.posts.create(
                visit.me, classroom_id, title=visit.field("title"), body=visit.field("body"),
                tags=visit.field("tags"))
        except FORM_ERRORS as error:
            return await self._stream_page(visit, error=error)
        return Response.redirect(f"/classrooms/{classroom_id}")

    async def _stream_page(self, visit: Visit, *, error: ClassroomError | None = None
                           ) -> Response:
        """The class's stream; with `error`, the post form shown again with what was typed.

        Rendered once per change of the class and shared (the cache drops it with the
        class): the posts and the tag list by every member of one role; the whole page by
        every member of one role who owns none of its comments (their tails differ: their
        own private thread, their delete buttons), else by that member alone. What differs
        per visitor on a shared page, the CSRF token and the header's name, is a slot filled
        per request (SlottedPage), so a request joins bytes and renders nothing."""
        me = visit.me
        classroom_id = int(visit.request.params["id"])
        classroom, role = await self._services.classes.get(me, classroom_id)
        tag = visit.request.query_value("tag") or None
        before = query_int(visit.request, "before")
        can_post = may(role, Action.CREATE_POST) and not classroom.archived

        async def shared_parts() -> tuple[Markup, Markup, tuple[int, ...]]:
            posts = await self._services.posts.stream(me, classroom_id, tag=tag,
                                                      before_id=before)
            tags = await self._services.posts.tags(me, classroom_id)
            older = None
            if len(posts) == PAGE_SIZE:
                query = {"before": str(posts[-1].id), **({"tag": tag} if tag else {})}
                older = f"/classrooms/{classroom_id}?{urllib.parse.urlencode(query)}"
            shared = dict(classroom=classroom, tag=tag, can_post=can_post)
            # Autoescaped template output: Markup keeps the page from escaping it again.
            return (Markup(render("_stream_posts.html", posts=posts, older=older, **shared)),
                    Markup(render("_stream_tags.html", tags=tags, **shared)),
                    tuple(post.id for post in posts))

        cache = self._services.cache
        posts_html, tags_html, post_ids = await cache.class_memo(
            classroom_id, ("stream.html", tag, before, role), shared_parts)
        live_room = await self._services.rooms.shown_session(classroom_id)
        comments = await self._services.posts.comments(me, classroom_id, post_ids)
        can_edit = may(role, Action.EDIT_POST) and not classroom.archived
        can_comment = may(role, Action.COMMENT) and not classroom.archived
        # The tails differ by role, and by visitor only for one who wrote or owns some of
        # these comments; everyone else of the role shares one rendering.
        personal = any(me.id in (c.author_id, c.student_id)
                       for thread in comments.values() for c in thread)

        async def with_tails() -> Markup:
            student_names = ({m.user.id: m.user.display_name
                              for m in await self._services.classes.roster(me, classroom_id)}
                             if may(role, Action.VIEW_ROSTER) else {})
            # str, not Markup: Markup.replace would escape the marker and the tail.
            posts = str(posts_html)
            for post_id in post_ids:
                tail = render("_post_tail.html", post_id=post_id, role=role, me=me,
                              thread=_threads(comments.get(post_id, []), role, me.id),
                              can_edit=can_edit, can_comment=can_comment,
                              student_names=student_names, csrf=_CSRF_SLOT,
                              csrf_field=CSRF_FIELD)
                posts = posts.replace(post_tail_marker(post_id), tail, 1)
            return Markup(posts)

        async def context() -> dict[str, Any]:
            return dict(
                classroom=classroom, role=role, posts_html=await with_tails(),
                tags_html=tags_html, tag=tag, can_post=can_post,
                show_code=may(role, Action.SHARE_JOIN_CODE),
                tabs=await self._tabs(classroom_id, role, "stream", live_room is not None),
                live_room=live_room,
                can_manage=may(role, Action.MANAGE_CLASS),
                can_leave=may(role, Action.LEAVE_CLASS),
                invite=self._invite_link(classroom.join_code),
                csrf_field=CSRF_FIELD, chat_url=self._chat_url,
                path=f"/classrooms/{classroom_id}")

        if error is not None:  # the form again, with what was typed: rendered for this visit
            values = {name: visit.field(name) for name in ("title", "body", "tags")}
            failure = http_error(error)
            page_html = render("stream.html", me=me, csrf=_CSRF_SLOT, error=failure.message,
                               values=values, **await context())
            return with_error_headers(
                html_page(SlottedPage.split(page_html).fill({"csrf": visit.csrf.encode()}),
                          failure.status), failure)

        async def shared_page() -> SlottedPage:
            # No `me` but the slot's: nothing of the visitor who fills the cache can show.
            return SlottedPage.split(render(
                "stream.html", me=_SLOTTED_USER, who_slot=_WHO_SLOT, csrf=_CSRF_SLOT,
                values={"title": "", "body": "", "tags": ""}, **await context()))

        slotted = await cache.class_memo(
            classroom_id, ("stream.html page", tag, before, role, me.id if personal else None,
                           live_room.id if live_room else None), shared_page)
        return html_page(slotted.fill({"csrf": visit.csrf.encode(), "who": user_badge(me)}))

    @staticmethod
    def _invite_link(code: str) -> str:
        """The link that opens the join form with the code filled in. Relative: the
        browser makes it absolute with the scheme and host the page was reached by (a proxy
        in front included) when someone copies it."""
        return f"/classrooms/join?{urllib.parse.urlencode({'code': code})}"

    # -- editing posts and comments -------------------------------------------------------

    async def edit_post_form(self, visit: Visit) -> Response:
        post, role = await self._services.posts.get(visit.me, int(visit.request.params["id"]))
        check(role, Action.EDIT_POST)
        values = {"title": post.title, "body": post.body, "tags": ", ".join(post.tags)}
        return self._page(visit, "edit_post.html", post=post, values=values)

    async def edit_post(self, visit: Visit) -> Response:
        post_id = int(visit.request.params["id"])
        try:
            post = await self._services.posts.edit(
                visit.me, post_id, title=visit.field("title"), body=visit.field("body"),
                tags=visit.field("tags"))
        except FORM_ERRORS as error:
            post, _ = await self._services.posts.get(visit.me, post_id)
            values = {name: visit.field(name) for name in ("title", "body", "tags")}
            return self._form_error(visit, "edit_post.html", error, post=post, values=values)
        return Response.redirect(f"/classrooms/{post.classroom_id}#post-{post.id}")

    async def delete_post(self, visit: Visit) -> Response:
        post = await self._services.posts.delete(visit.me, int(visit.request.params["id"]))
        return Response.redirect(f"/classrooms/{post.classroom_id}")

    async def add_comment(self, visit: Visit) -> Response:
        """A comment from the form under a post. A refused one (empty, too long) is an
        error page with the way back: the form's own limits catch it first."""
        post_id = int(visit.request.params["id"])
        student = visit.field("student_id")
        comment = await self._services.posts.comment(
            visit.me, post_id, visit.field("body"), private=visit.field("private") == "1",
            student_id=int(student) if student.isdigit() and len(student) < 19 else None)
        post, _ = await self._services.posts.get(visit.me, comment.post_id)
        return Response.redirect(f"/classrooms/{post.classroom_id}#post-{post.id}")

    async def delete_comment(self, visit: Visit) -> Response:
        comment = await self._services.posts.delete_comment(
            visit.me, int(visit.request.params["id"]))
        post, _ = await self._services.posts.get(visit.me, comment.post_id)
        return Response.redirect(f"/classrooms/{post.classroom_id}#post-{post.id}")

    # -- managing a class ---------------------------------------------------------------

    async def remove_student(self, visit: Visit) -> Response:
        classroom_id = int(visit.request.params["id"])
        await self._services.classes.remove_student(visit.me, classroom_id,
                                                    int(visit.request.params["user"]))
        return Response.redirect(f"/classrooms/{classroom_id}/students")

    async def leave(self, visit: Visit) -> Response:
        await self._services.classes.leave(visit.me, int(visit.request.params["id"]))
        return Response.redirect(HOME)

    async def join_code(self, visit: Visit) -> Response:
        """`action`: "reset" (a new code), "off" or "on" (joining by code)."""
        classroom_id = int(visit.request.params["id"])
        classes = self._services.classes
        action = visit.field("action")
        if action == "reset":
            await classes.reset_join_code(visit.me, classroom_id)
        elif action in ("on", "off"):
            await classes.set_joining(visit.me, classroom_id, action == "on")
        else:
            raise Invalid("action must be reset, on or off")
        return Response.redirect(f"/classrooms/{classroom_id}")

    async def archive(self, visit: Visit) -> Response:
        classroom_id = int(visit.request.params["id"])
        archived = visit.field("archived") != "0"
        await self._services.classes.set_archived(visit.me, classroom_id, archived)
        return Response.redirect(HOME if archived else f"/classrooms/{classroom_id}")

    async def students(self, visit: Visit) -> Response:
        me = visit.me
        classroom_id = int(visit.request.params["id"])
        classroom, role = await self._services.classes.get(me, classroom_id)
        members = await self._services.classes.roster(me, classroom_id)
        return self._page(visit, "students.html", classroom=classroom, role=role,
                          instructors=[m for m in members if m.role == Role.INSTRUCTOR],
                          students=[m for m in members if m.role == Role.STUDENT],
                          can_manage=may(role, Action.MANAGE_CLASS),
                          tabs=await self._tabs(classroom_id, role, "students"))


def _threads(comments: list[Comment], role: Role, me_id: int) -> dict[str, Any]:
    """A post's comments as its page shows them: the class's, and the private threads by
    student (the instructor sees each student's; a student only their own)."""
    public = [c for c in comments if c.student_id is None]
    private: dict[int, list[Comment]] = {}
    for comment in comments:
        if comment.student_id is not None:
            private.setdefault(comment.student_id, []).append(comment)
    return {"public": public, "private": private,
            "may_delete": {c.id for c in comments
                           if may_delete_comment(role, me_id, c.author_id)}}
