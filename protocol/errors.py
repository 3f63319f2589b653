"""The one exception the HTTP layer speaks: an error status with a message.

Handlers raise `HTTPError` to answer with an error page; the server raises nothing of its own
to callers, it turns every failure into an `HTTPError` handed to the error page renderer.
"""

from __future__ import annotations

import http
from collections.abc import Sequence

__all__ = ["HTTPError", "reason_phrase"]


def reason_phrase(status: int) -> str:
    """The standard reason phrase for `status` ("Not Found"), or "" if it has none."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


class HTTPError(Exception):
    """An HTTP error response to send instead of the handler's answer.

    `status` is 400-599 (a ValueError otherwise: redirects and successes are Responses, not
    exceptions). `message` is meant for the user and defaults to the reason phrase. `headers`
    are added to the error response (e.g. `Allow` for 405, `Retry-After` for 503).
    """

    status: int
    message: str
    headers: tuple[tuple[str, str], ...]

    def __init__(
        self, status: int, message: str = "", *, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"HTTPError status must be 400-599, not {status}")
        self.status = status
        self.message = message or reason_phrase(status) or "Error"
        self.headers = tuple((name, value) for name, value in headers)
        super().__init__(status, self.message)

    def __str__(self) -> str:
        return f"{self.status} {self.message}"
