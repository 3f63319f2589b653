"""Wire formats, knowing nothing of classrooms: HTTP/1.1 over h11 and trio.

Handlers are `async (Request) -> Response`; `Router` dispatches to them, `StaticFiles` serves
a folder, `HTTPServer` runs one over TCP with every input bounded by `HTTPLimits`.
"""

from .cookies import format_set_cookie, parse_cookie_header
from .errors import HTTPError
from .messages import Handler, Request, Response
from .router import Router
from .server import HTTPLimits, HTTPServer
from .static import StaticFiles
from .urls import MAX_FORM_FIELDS, MAX_QUERY_FIELDS, parse_form, parse_query, parse_target
from .wire import ErrorPage, default_error_page

__all__ = [
    "MAX_FORM_FIELDS",
    "MAX_QUERY_FIELDS",
    "ErrorPage",
    "HTTPError",
    "HTTPLimits",
    "HTTPServer",
    "Handler",
    "Request",
    "Response",
    "Router",
    "StaticFiles",
    "default_error_page",
    "format_set_cookie",
    "parse_cookie_header",
    "parse_form",
    "parse_query",
    "parse_target",
]
