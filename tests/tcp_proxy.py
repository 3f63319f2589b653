"""A TCP proxy for fault tests: put it between a client and a server, then `cut()` the
network between them and `restore()` it, without touching the server itself.

    async with TcpProxy("127.0.0.1", 3306) as proxy:
        url = proxy.via("mysql://root@127.0.0.1:3306/test")  # ...@127.0.0.1:{proxy.port}/test
        ...
        proxy.cut()      # every connection through it is closed, both ways, at once;
                         # new ones are accepted and closed straight away (a dead server)
        proxy.restore()  # new connections reach the server again

`cut()` closes the sockets before it returns, so whatever the test does next already meets a
closed connection (the peer may still be reading what was in flight).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import attrs
import trio

_CHUNK = 65536


@attrs.define(eq=False)
class _Link:
    """One client connection and its connection to the target."""

    client: trio.SocketStream
    upstream: trio.SocketStream | None = None
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)

    def close(self) -> None:
        self.scope.cancel()
        for stream in (self.client, self.upstream):
            if stream is not None:
                stream.socket.close()


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._links: set[_Link] = set()
        self._is_cut = False
        self._nursery: trio.Nursery | None = None

    @property
    def open_links(self) -> int:
        """Connections currently forwarded."""
        return len(self._links)

    def via(self, url: str) -> str:
        """`url` (scheme://user@host:port/path) with its address replaced by the proxy's."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def cut(self) -> None:
        """Close every current connection both ways and refuse new ones until restore()."""
        self._is_cut = True
        for link in list(self._links):
            link.close()
        self._links.clear()

    def restore(self) -> None:
        self._is_cut = False

    async def __aenter__(self) -> TcpProxy:
        self._stack = AsyncExitStack()
        await self._stack.enter_async_context(self._running())
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> bool | None:
        return await self._stack.__aexit__(exc_type, exc, tb)

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.port = await nursery.start(self._listen)
            try:
                yield
            finally:
                nursery.cancel_scope.cancel()
                for link in list(self._links):
                    link.close()
                self._links.clear()

    async def _listen(self, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                      ) -> None:
        [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
        async with listener:
            task_status.started(listener.socket.getsockname()[1])
            assert self._nursery is not None
            while True:
                stream = await listener.accept()
                if self._is_cut:
                    stream.socket.close()
                    continue
                link = _Link(stream)
                self._links.add(link)  # now, so that a cut() before _serve runs closes it
                self._nursery.start_soon(self._serve, link)

    async def _serve(self, link: _Link) -> None:
        try:
            with link.scope:
                try:
                    link.upstream = await trio.open_tcp_stream(*self.target)
                except OSError:
                    return  # the target is down: the client sees its connection closed
                if link.scope.cancel_called:  # cut while connecting
                    return
                async with trio.open_nursery() as nursery:
                    done = nursery.cancel_scope.cancel
                    nursery.start_soon(_pump, link.client, link.upstream, done)
                    nursery.start_soon(_pump, link.upstream, link.client, done)
        finally:
            self._links.discard(link)
            link.close()


async def _pump(source: trio.SocketStream, sink: trio.SocketStream,
                done: Callable[[], None]) -> None:
    """Copy one direction until either side ends; then end the whole link."""
    try:
        while data := await source.receive_some(_CHUNK):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        done()
