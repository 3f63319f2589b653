"""Accepting a connection: a listener out of file descriptors or memory waits a moment and
tries again (as trio.serve_tcp does) instead of ending the server; the HTTP and the chat
listeners both accept this way."""

from __future__ import annotations

import errno
import logging
from typing import Final

import trio

RETRY_SECONDS: Final = 0.1
_CAPACITY_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})


async def accept(listener: trio.SocketListener, log: logging.Logger) -> trio.SocketStream:
    while True:
        try:
            return await listener.accept()
        except OSError as exc:
            if exc.errno not in _CAPACITY_ERRNOS:
                raise
            log.warning("accept failed (%s); retrying in %.1f s", exc, RETRY_SECONDS)
            await trio.sleep(RETRY_SECONDS)
