"""The browser-facing site and the JSON API: HTTP handlers, templates, static files.

Turns requests into calls on `classroom/` and results into pages or JSON; start-up code
serves `Site.handler` with `protocol.HTTPServer(handler, error_page=site.error_page)`.
"""

from .site import Site

__all__ = ["Site"]
